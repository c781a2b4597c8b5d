#!/usr/bin/env bash
# Set up dl_vision on a fresh machine and run its commands.
#
#   bash bootstrap/setup.sh [setup|env|demo|test|doctor|shell|ray|gpu-check|check-wheels]
#
# setup (the default) is idempotent: it installs the missing system packages (as root; otherwise
# it prints the apt-get line), creates a Python env bound to ROS's interpreter, installs
# bootstrap/requirements.txt with numpy held to ROS's version, builds a catkin workspace holding
# this checkout and fetches the default models. A second run changes nothing. env stops before the
# workspace (what needs only bootstrap/: a Docker layer of its own).
# demo, test and shell run setup first, then work inside the env (see bootstrap/activate.sh);
# test also caches the wheels and the ONNX export its tests use, so that no test downloads or
# exports anything.
# doctor runs without setup, so it can explain a setup that fails. ray runs setup, then adds Ray
# (bootstrap/requirements-ray.txt) for fleet evaluation; test installs it too.
#
# gpu-check runs setup, then builds and checks TensorRT engines on an NVIDIA GPU (see the README);
# check-wheels asks the package index whether every pin has a JetPack 5 wheel (bootstrap/check_wheels.py).
#
# Environment: DL_VISION_HOME (env + workspace, default ~/.dl_vision), DL_VISION_CACHE (models,
# default ~/.cache/dl_vision), DL_VISION_ENV (venv, the default, or conda), DL_VISION_GPU (auto, the
# default: GPU wheels when an NVIDIA driver answers; cuda: require them; none: CPU only),
# DL_VISION_THIRD_PARTY (sources built into the workspace when the system lacks them, default
# shared/third_party inside or beside the checkout), DL_VISION_PYTHON38 (the test command's Python 3.8; default: on PATH or pyenv's).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
DL_VISION_HOME=${DL_VISION_HOME:-$HOME/.dl_vision}
DL_VISION_ENV=${DL_VISION_ENV:-venv}
# The third-party sources for tests sit in shared/ beside the checkout (or inside it).
if [ -z "${DL_VISION_THIRD_PARTY:-}" ]; then
    DL_VISION_THIRD_PARTY=$REPO/../shared/third_party
    [ -d "$REPO/shared/third_party" ] && DL_VISION_THIRD_PARTY=$REPO/shared/third_party
fi
WS=$DL_VISION_HOME/ws
export DL_VISION_HOME
# pip --user packages in ~/.local would satisfy (and shadow) what the env should hold.
export PYTHONNOUSERSITE=1

log() { printf '[dl_vision setup] %s\n' "$*" >&2; }
die() { printf '[dl_vision setup] error: %s\n' "$*" >&2; exit 1; }

# --- platform -------------------------------------------------------------------------------
# Sets PLATFORM, ROS_PYTHON (ROS's interpreter), ROS_SETUP (file to source, may be empty),
# CATKIN_EXTEND (underlay for catkin config, may be empty) and APT_PACKAGES.
detect_platform() {
    local id="" codename=""
    if [ -r /etc/os-release ]; then
        # shellcheck disable=SC1091
        id=$(. /etc/os-release && echo "${ID:-}")
        # shellcheck disable=SC1091
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    fi
    ROS_PYTHON=/usr/bin/python3
    if [ -f /opt/ros/noetic/setup.bash ] || { [ "$id" = ubuntu ] && [ "$codename" = focal ]; }; then
        # Ubuntu 20.04 (a robot, the ros:noetic images, a Jetson on JetPack 5) with ROS from
        # packages.ros.org, its mirrors or snapshots.ros.org.
        PLATFORM=noetic-opt
        ROS_SETUP=/opt/ros/noetic/setup.bash
        CATKIN_EXTEND=/opt/ros/noetic
        APT_PACKAGES="ros-noetic-ros-base ros-noetic-rospy ros-noetic-rosbag ros-noetic-rostest
            ros-noetic-roslaunch ros-noetic-cv-bridge ros-noetic-sensor-msgs ros-noetic-std-msgs
            ros-noetic-diagnostic-msgs ros-noetic-diagnostic-updater ros-noetic-dynamic-reconfigure
            ros-noetic-message-generation ros-noetic-message-runtime ros-noetic-vision-msgs
            python3-catkin-tools python3-catkin-lint python3-venv python3-pip python3-opencv
            build-essential cmake"
    elif [ "$id" = debian ] && [ "$codename" = bookworm ]; then
        # Debian bookworm packages ROS 1 itself: no /opt/ros, everything under /usr. Nothing in
        # ROS's packages pulls a C++ compiler, which catkin's CMake project needs.
        PLATFORM=debian-bookworm
        ROS_SETUP=""
        CATKIN_EXTEND=""
        APT_PACKAGES="ros-core-dev python3-rospy python3-rosbag python3-rostest python3-roslaunch
            python3-cv-bridge ros-sensor-msgs ros-std-msgs ros-diagnostic-msgs python3-diagnostic-msgs
            python3-dynamic-reconfigure libdynamic-reconfigure-config-init-mutex-dev
            python3-diagnostic-updater catkin catkin-tools catkin-lint ros-message-generation
            python3-venv python3-pip python3-opencv build-essential"
    else
        die "unsupported platform '${id:-unknown} ${codename:-}': expected Debian bookworm or Ubuntu 20.04 with ROS Noetic"
    fi
}

source_ros() {
    if [ -n "$ROS_SETUP" ]; then
        if [ ! -f "$ROS_SETUP" ]; then
            die "expected $ROS_SETUP after installing ROS, found nothing"
        fi
        set +u
        # shellcheck disable=SC1090
        source "$ROS_SETUP"
        set -u
    fi
}

# --- system packages -------------------------------------------------------------------------
# Index URIs of ROS 1 apt repositories: packages.ros.org/ros (and ros-testing), its mirrors
# (https://<mirror>/ros/ubuntu) and snapshots.ros.org/noetic/<snapshot>/ubuntu, which the
# ros:noetic images use since June 2025. ROS 2's .../ros2/ubuntu does not match.
ROS1_APT_URI='/ros(-testing)?/(ubuntu|debian)/dists/|/noetic/[^/]+/(ubuntu|debian)/dists/'

# apt's options for DL_VISION_APT_ROOT, the root directory apt reads its configuration, sources
# and lists from (default /; tests point it at fake apt configurations).
apt_options() {
    if [ "${DL_VISION_APT_ROOT:-/}" != / ]; then
        printf '%s\n' -o "Dir=$DL_VISION_APT_ROOT"
    fi
}

# Asks apt where ROS Noetic comes from and prints that source; fails when apt has none. With
# package lists downloaded, apt's candidate for ros-noetic-ros-base answers (whatever the source
# is called); otherwise the index URIs apt would fetch, parsed by apt itself from every sources
# format it reads (.list or deb822 .sources, signed-by and other options).
ros_noetic_apt_source() {
    local options candidate uri
    mapfile -t options < <(apt_options)
    candidate=$(apt-cache "${options[@]}" policy ros-noetic-ros-base 2>/dev/null | awk '$1 == "Candidate:" {print $2}')
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then
        echo "ros-noetic-ros-base $candidate is available (apt-cache policy)"
        return 0
    fi
    uri=$(apt-get "${options[@]}" update --print-uris 2>/dev/null | tr -d "'" | cut -d' ' -f1 | grep -E "$ROS1_APT_URI" | head -n 1) || true
    [ -n "$uri" ] || return 1
    echo "${uri%%/dists/*} (apt sources)"
}

# One line saying what to do when ros_noetic_apt_source finds nothing.
ros_noetic_apt_advice() {
    local options ros2
    mapfile -t options < <(apt_options)
    ros2=$(apt-get "${options[@]}" update --print-uris 2>/dev/null | tr -d "'" | cut -d' ' -f1 | grep -E '/ros2/[^/]+/dists/' | head -n 1) || true
    printf '%s' "ROS Noetic's apt repository is not configured"
    if [ -n "$ros2" ]; then
        printf '%s' " (apt has only ROS 2's ${ros2%%/dists/*})"
    fi
    printf '%s' ": add 'deb [signed-by=/usr/share/keyrings/ros1-snapshots-archive-keyring.gpg] http://snapshots.ros.org/noetic/final/ubuntu focal main'" \
        " to /etc/apt/sources.list.d/ros1-snapshots.list with its key 4B63CF8FDE49746E98FA01DDAD19BAB3CBF125EA (as the ros:noetic images do), then rerun"
}

install_system_packages() {
    local missing=() pkg status
    for pkg in $APT_PACKAGES; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        if [ "$status" != "install ok installed" ]; then
            missing+=("$pkg")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    if [ "$PLATFORM" = noetic-opt ]; then
        local ros_source
        ros_source=$(ros_noetic_apt_source) || die "$(ros_noetic_apt_advice)"
        log "ROS Noetic's apt source: $ros_source"
    fi
    if [ "$(id -u)" -ne 0 ]; then
        printf '[dl_vision setup] missing system packages; run this, then rerun setup:\n' >&2
        printf '  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y %s\n' "${missing[*]}" >&2
        exit 1
    fi
    log "installing ${#missing[@]} system packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# --- Python env ------------------------------------------------------------------------------
ros_python_version() {
    "$ROS_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

# Lets an interpreter that is not ROS's (a conda env, a pyenv or python.org build) import ROS's
# modules: a .pth file in its site-packages lists ROS's dist-packages directories, after its own.
# Compiled modules (cv_bridge's boost module, cv2, numpy) need the same Python minor version.
bridge_ros_site_packages() {
    local python=$1 version purelib
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [ "$version" != "$(ros_python_version)" ]; then
        die "$python is Python $version: expected ROS's version $(ros_python_version), whose compiled modules it must load"
    fi
    purelib=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$ROS_PYTHON" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith(("dist-packages", "site-packages")) and p.startswith(("/usr", "/opt/ros"))))' \
        > "$purelib/dl_vision_ros.pth"
}

# Sets ENV_DIR and ENV_PYTHON.
create_env() {
    case "$DL_VISION_ENV" in
        venv)
            ENV_DIR=$DL_VISION_HOME/venv
            ENV_PYTHON=$ENV_DIR/bin/python3
            if [ ! -x "$ENV_PYTHON" ]; then
                log "creating venv $ENV_DIR from $ROS_PYTHON (with ROS's site-packages)"
                "$ROS_PYTHON" -m venv --system-site-packages "$ENV_DIR"
            fi
            ;;
        conda)
            # A conda env with ROS's Python version; ROS's site-packages join it through a .pth
            # file (bridge_ros_site_packages), and the compiled modules keep ROS's numpy pin.
            # For robots that standardise on conda; conda itself is not run on the machines here.
            command -v conda >/dev/null || die "DL_VISION_ENV=conda but no conda on PATH"
            ENV_DIR=$DL_VISION_HOME/conda
            ENV_PYTHON=$ENV_DIR/bin/python3
            if [ ! -x "$ENV_PYTHON" ]; then
                log "creating conda env $ENV_DIR (python=$(ros_python_version), like ROS's interpreter)"
                conda create -y -q -p "$ENV_DIR" "python=$(ros_python_version)" pip
            fi
            bridge_ros_site_packages "$ENV_PYTHON"
            ;;
        *)
            die "DL_VISION_ENV must be venv or conda, found '$DL_VISION_ENV'"
            ;;
    esac
}

install_requirements() {
    local constraints=$ENV_DIR/dl_vision-constraints.txt stamp=$ENV_DIR/dl_vision-requirements.sha256
    local numpy_version
    numpy_version=$("$ROS_PYTHON" -c 'import numpy; print(numpy.__version__)') \
        || die "ROS's interpreter $ROS_PYTHON cannot import numpy: install python3-numpy"
    {
        echo "# Written by bootstrap/setup.sh: keep what ROS's compiled modules were built against."
        if "$ROS_PYTHON" -c 'import sys; sys.exit(sys.version_info >= (3, 9))'; then
            # Ubuntu 20.04's numpy 1.17 is older than any TensorFlow for 3.8 accepts; numpy 1.x
            # keeps its ABI forward, so a newer 1.x works under cv_bridge, numpy 2 does not.
            echo "numpy>=$numpy_version,<2"
        else
            echo "numpy==$numpy_version"
        fi
    } > "$constraints.new"
    if cmp -s "$constraints.new" "$constraints"; then
        rm -f "$constraints.new"
    else
        mv "$constraints.new" "$constraints"
    fi
    local digest
    digest=$({ cat "$REPO"/bootstrap/requirements{,-dev}.txt "$constraints"; "$ENV_PYTHON" -VV; } | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        return 0
    fi
    # Ubuntu 20.04's pip 20.0 cannot read manylinux_2_x wheel tags; newer pips are left alone.
    "$ENV_PYTHON" -m pip install -q --disable-pip-version-check "pip>=21.3"
    log "installing bootstrap/requirements.txt and requirements-dev.txt into $ENV_DIR (numpy held by $constraints)"
    "$ENV_PYTHON" -m pip install -q --disable-pip-version-check \
        -r "$REPO/bootstrap/requirements.txt" -r "$REPO/bootstrap/requirements-dev.txt" -c "$constraints"
    # opencv: ROS's cv2 must stay the one that imports; a pip wheel pulled in by a dependency
    # would shadow it (and bring its own numpy expectations).
    local cv2_file
    cv2_file=$("$ENV_PYTHON" -c 'import cv2; print(cv2.__file__)')
    case "$cv2_file" in
        "$ENV_DIR"/*) die "a pip opencv ($cv2_file) shadows ROS's cv2: pip uninstall it from $ENV_DIR and pin the package that pulled it" ;;
    esac
    echo "$digest" > "$stamp"
}

# Ray for `evaluate offline --ray` (workstations, cluster nodes, CI; not robots), held to the
# same numpy constraint; a stamp skips pip on the next run.
install_ray() {
    local constraints=$ENV_DIR/dl_vision-constraints.txt stamp=$ENV_DIR/dl_vision-ray.sha256 digest
    digest=$({ cat "$REPO/bootstrap/requirements-ray.txt" "$constraints"; "$ENV_PYTHON" -VV; } | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        return 0
    fi
    log "installing bootstrap/requirements-ray.txt into $ENV_DIR (numpy held by $constraints)"
    "$ENV_PYTHON" -m pip install -q --disable-pip-version-check \
        -r "$REPO/bootstrap/requirements-ray.txt" -c "$constraints"
    echo "$digest" > "$stamp"
}

# --- GPU wheels ------------------------------------------------------------------------------
# Sets GPU_MODE (none, cuda: x86 with an NVIDIA driver, or jetson) and CUDA_MAJOR (the driver's).
detect_gpu() {
    local wanted=${DL_VISION_GPU:-auto}
    GPU_MODE=none
    CUDA_MAJOR=""
    case "$wanted" in
        none) return 0 ;;
        auto|cuda) ;;
        *) die "DL_VISION_GPU must be auto, cuda or none, found '$wanted'" ;;
    esac
    if [ -f /etc/nv_tegra_release ]; then
        GPU_MODE=jetson
    elif command -v nvidia-smi >/dev/null 2>&1 \
        && CUDA_MAJOR=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n 1) \
        && [ -n "$CUDA_MAJOR" ]; then
        GPU_MODE=cuda
    elif [ "$wanted" = cuda ]; then
        die "DL_VISION_GPU=cuda but no NVIDIA driver answers (nvidia-smi is missing or fails): install the driver, or use DL_VISION_GPU=none"
    fi
}

# x86: onnxruntime-gpu, TensorRT and cuda-python for the driver's CUDA major, in place of the CPU
# onnxruntime. Jetson: JetPack's TensorRT through system site-packages, pycuda built once.
install_gpu_requirements() {
    local file stamp=$ENV_DIR/dl_vision-gpu.sha256 digest
    case "$GPU_MODE" in
        none) return 0 ;;
        jetson)
            file=$REPO/bootstrap/requirements-gpu-jetson.txt
            "$ENV_PYTHON" -c 'import tensorrt' 2>/dev/null \
                || log "warning: JetPack's TensorRT does not import in $ENV_DIR: sudo apt install python3-libnvinfer"
            export PATH="/usr/local/cuda/bin:$PATH"  # pycuda's build finds nvcc and CUDA there
            ;;
        cuda)
            file=$REPO/bootstrap/requirements-gpu-cuda$CUDA_MAJOR.txt
            if [ ! -f "$file" ]; then
                die "the NVIDIA driver supports CUDA $CUDA_MAJOR: expected CUDA 12 or 13 (bootstrap/requirements-gpu-cuda12.txt, -cuda13.txt), found no GPU requirements for it; update the driver or set DL_VISION_GPU=none"
            fi
            ;;
    esac
    digest=$({ cat "$file" "$ENV_DIR/dl_vision-requirements.sha256"; "$ENV_PYTHON" -VV; } | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        return 0
    fi
    if [ "$GPU_MODE" = cuda ] && "$ENV_PYTHON" -m pip show -q onnxruntime >/dev/null 2>&1; then
        # Both wheels install the module onnxruntime: the CPU one must go, and the GPU one's files
        # (partly overwritten by it) come back whole.
        log "replacing the CPU onnxruntime with onnxruntime-gpu"
        "$ENV_PYTHON" -m pip uninstall -q -y onnxruntime
        "$ENV_PYTHON" -m pip uninstall -q -y onnxruntime-gpu >/dev/null 2>&1 || true
    fi
    log "installing $(basename "$file") into $ENV_DIR (GPU: $GPU_MODE${CUDA_MAJOR:+, driver CUDA $CUDA_MAJOR})"
    "$ENV_PYTHON" -m pip install -q --disable-pip-version-check -r "$file" -c "$ENV_DIR/dl_vision-constraints.txt"
    echo "$digest" > "$stamp"
}

# --- catkin workspace ------------------------------------------------------------------------
build_workspace() {
    mkdir -p "$WS/src"
    local link=$WS/src/dl_vision
    if [ -L "$link" ] && [ "$(readlink "$link")" != "$REPO" ]; then
        # Another checkout (CI clones elsewhere): repoint, and drop build state that names the old path.
        log "repointing $link from $(readlink "$link") to $REPO"
        rm -f "$link"
        rm -rf "$WS/build" "$WS/devel" "$WS/logs"
    elif [ -e "$link" ] && [ ! -L "$link" ]; then
        die "$link exists and is not a symlink: move it away"
    fi
    [ -L "$link" ] || ln -s "$REPO" "$link"
    cd "$WS"
    if [ ! -d "$WS/.catkin_tools" ]; then
        catkin init >/dev/null
    fi
    local extend_args=(--no-extend)
    if [ -n "$CATKIN_EXTEND" ]; then
        extend_args=(--extend "$CATKIN_EXTEND")
    fi
    local cmake_args=("-DPYTHON_EXECUTABLE=$ENV_PYTHON" -DCMAKE_BUILD_TYPE=Release)
    local config=("${extend_args[@]}" --cmake-args "${cmake_args[@]}")
    local config_stamp=$WS/.catkin_tools/dl_vision-config
    if [ ! -f "$config_stamp" ] || [ "$(cat "$config_stamp")" != "${config[*]}" ]; then
        catkin config "${config[@]}" >/dev/null
        echo "${config[*]}" > "$config_stamp"
    fi
    if link_vision_msgs; then
        # Its own gtest needs googletest, which is not installed: build it without its tests.
        log "catkin build vision_msgs (from $(readlink "$WS/src/vision_msgs"))"
        catkin build --no-status --no-notify vision_msgs --cmake-args "${cmake_args[@]}" -DCATKIN_ENABLE_TESTING=OFF
    fi
    log "catkin build in $WS"
    catkin build --no-status --no-notify --summarize dl_vision
    cd "$REPO"
}

# vision_msgs (the ~publish_vision_msgs output and its rostest): the system's package where it
# is installed (ros-noetic-vision-msgs on Ubuntu), else $DL_VISION_THIRD_PARTY/vision_msgs linked
# into the workspace (Debian does not package it). Succeeds when the workspace is to build it.
link_vision_msgs() {
    local link=$WS/src/vision_msgs source=$DL_VISION_THIRD_PARTY/vision_msgs wanted=""
    if [ ! -f "${CATKIN_EXTEND:-/usr}/share/vision_msgs/package.xml" ] && [ -f "$source/package.xml" ]; then
        wanted=$(cd "$source" && pwd -P)
    fi
    if [ -L "$link" ] && [ "$(readlink "$link")" != "$wanted" ]; then
        log "unlinking $link: vision_msgs now comes from ${wanted:-the system, or nowhere}"
        rm -f "$link"
        (cd "$WS" && catkin clean --yes --orphans >/dev/null)
    fi
    [ -n "$wanted" ] || return 1
    [ -L "$link" ] || ln -s "$wanted" "$link"
}

# --- models ----------------------------------------------------------------------------------
fetch_assets() {
    PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" "$ENV_PYTHON" -m dl_vision.assets >/dev/null
}

# --- test data -------------------------------------------------------------------------------
# Tests never download: what they need beyond the models is cached here, once. The doctor's
# shadowing test puts a numpy 2 (which ROS's compiled modules were not built for) on PYTHONPATH.
TEST_NUMPY=2.0.2
cache_test_wheels() {
    local dir=${DL_VISION_CACHE:-$HOME/.cache/dl_vision}/wheels tag
    tag=$("$ENV_PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    if compgen -G "$dir/numpy-$TEST_NUMPY-$tag-*.whl" >/dev/null; then
        return 0
    fi
    if [ "$tag" = cp38 ]; then
        log "no numpy 2 exists for Python 3.8: the doctor's shadowing test will fail here"
        return 0
    fi
    log "caching the numpy $TEST_NUMPY wheel the doctor's test uses in $dir"
    "$ENV_PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --dest "$dir" "numpy==$TEST_NUMPY" \
        || die "expected to download numpy==$TEST_NUMPY for $tag into $dir (tests use it offline), found an error above"
}

# The ONNX export the tests run (coco_onnx): made once here, with a log line, so that no test pays
# minutes for it inside its own time limit. A stamp makes the second run free.
make_test_exports() {
    PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" "$ENV_PYTHON" -m dl_vision.assets ssd_mobilenet_v2_coco_onnx >/dev/null
}

# The system packages and the env with its wheels (GPU ones included): what needs only bootstrap/
# (a Docker layer of its own).
setup_env() {
    detect_platform
    install_system_packages
    source_ros
    create_env
    install_requirements
    detect_gpu
    install_gpu_requirements
}

setup() {
    setup_env
    build_workspace
    fetch_assets
    log "ready ($PLATFORM, env $ENV_DIR): source bootstrap/activate.sh"
}

activate() {
    set +u
    # shellcheck disable=SC1091
    source "$REPO/bootstrap/activate.sh"
    set -u
}

run_tests() {
    cd "$REPO"
    # Through the workspace link: catkin_lint wants the directory named like the package.
    log "catkin_lint --strict"
    catkin_lint --strict -W2 --offline "$WS/src/dl_vision"
    log "ruff check, ruff format --check"
    ruff check "$REPO/src" "$REPO/test" "$REPO/scripts"
    ruff format --check "$REPO/src" "$REPO/test" "$REPO/scripts"
    run_static_checks
    # Before the full suite: quick, and the full suite's summary stays the closing line.
    run_python38_unit_tests
    log "pytest"
    python3 -m pytest -q -ra --durations=15 "$REPO/test"
}

# What cannot run here is checked statically: the Dockerfiles (hadolint), the workflow
# (actionlint, which also runs shellcheck on its run: steps) and the shell scripts (shellcheck).
run_static_checks() {
    local tool
    for tool in hadolint actionlint shellcheck; do
        if ! command -v "$tool" >/dev/null; then
            [ "$(uname -m)" = x86_64 ] && die "$tool is not installed: expected it from bootstrap/requirements-dev.txt in $VIRTUAL_ENV"
            log "$tool: skipped (no $(uname -m) wheel for this Python; x86_64 CI runs it)"
        fi
    done
    if command -v hadolint >/dev/null; then
        log "hadolint docker/Dockerfile docker/Dockerfile.jetson"
        hadolint "$REPO/docker/Dockerfile" "$REPO/docker/Dockerfile.jetson"
    fi
    if command -v actionlint >/dev/null; then
        log "actionlint .github/workflows/ci.yml"
        actionlint "$REPO/.github/workflows/ci.yml"
    fi
    if command -v shellcheck >/dev/null; then
        log "shellcheck bootstrap/*.sh .ci/run"
        shellcheck "$REPO"/bootstrap/*.sh "$REPO/.ci/run"
    fi
}

# A Python 3.8 for run_python38_unit_tests: $DL_VISION_PYTHON38, python3.8 on PATH, or pyenv's.
find_python38() {
    local candidate
    for candidate in "${DL_VISION_PYTHON38:-}" python3.8 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.8.*/bin/python3.8; do
        if [ -n "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 8))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# Noetic and JetPack 5 run Python 3.8. Where the env is newer and a Python 3.8 exists, the
# core's unit tests (no ROS) also run under 3.8 with the 3.8 pins of requirements.txt, in
# $DL_VISION_HOME/py38 (made once; a stamp skips pip afterwards), so that a 3.9+ API, a numpy
# change or a pin without a 3.8 wheel fails here rather than on a robot.
run_python38_unit_tests() {
    if python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 8))'; then
        log "Python 3.8 unit tests: the env is Python 3.8, the full suite below covers them"
        return 0
    fi
    local python38 env=$DL_VISION_HOME/py38
    if ! python38=$(find_python38); then
        log "Python 3.8 unit tests: skipped, no python3.8 found (set DL_VISION_PYTHON38)"
        return 0
    fi
    # ROS's cv2 is not there: opencv-python-headless stands in for it; numpy as on Noetic (numpy 1.x).
    local extra=(opencv-python-headless==4.10.0.84 "numpy<2")
    local stamp=$env/dl_vision-requirements.sha256 digest
    digest=$({ cat "$REPO/bootstrap/requirements.txt"; echo "${extra[*]}"; "$python38" -VV; } | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
        log "creating $env from $python38 with the Python 3.8 pins of bootstrap/requirements.txt"
        rm -rf "$env"
        "$python38" -m venv "$env"
        "$env/bin/python" -m pip install -q --disable-pip-version-check "pip>=21.3"
        "$env/bin/python" -m pip install -q --disable-pip-version-check -r "$REPO/bootstrap/requirements.txt" "${extra[@]}"
        echo "$digest" > "$stamp"
    fi
    log "pytest test/unit under $("$env/bin/python" -V): the core, without ROS (see test/unit/conftest.py)"
    (unset VIRTUAL_ENV ROS_PACKAGE_PATH; PYTHONPATH="$REPO/src" "$env/bin/python" -m pytest -q -ra -m "not ros" -p no:cacheprovider "$REPO/test/unit")
}

run_demo() {
    # The demo ends when its reporter exits; roslaunch then prints "REQUIRED process has died".
    roslaunch dl_vision demo.launch output_dir:="$DL_VISION_HOME/demo_output"
    log "demo finished; annotated frames are in $DL_VISION_HOME/demo_output"
}

# The doctor runs without setup, so that it can explain why setup fails: in the env when it
# exists, else on ROS's interpreter, with the sources of this checkout.
run_doctor() {
    detect_platform
    if [ -f "$WS/devel/setup.bash" ] && { [ -x "$DL_VISION_HOME/venv/bin/python3" ] || [ -x "$DL_VISION_HOME/conda/bin/python3" ]; }; then
        activate
        exec python3 -m dl_vision.doctor "$@"
    fi
    log "no built env in $DL_VISION_HOME: checking ROS's interpreter $ROS_PYTHON with this checkout's sources"
    PYTHONPATH="$REPO/src" exec "$ROS_PYTHON" -m dl_vision.doctor "$@"
}

main() {
    local command=${1:-setup}
    case "$command" in
        setup) setup ;;
        env) setup_env ;;
        test) setup; install_ray; cache_test_wheels; make_test_exports; activate; run_tests ;;
        ray) setup; install_ray; log "Ray installed: evaluate offline --ray local|auto|ADDRESS" ;;
        demo) setup; activate; run_demo ;;
        doctor) shift; run_doctor "$@" ;;
        gpu-check) shift; setup; activate; exec python3 -m dl_vision.engines.gpu_check "$@" ;;
        check-wheels) shift; exec python3 "$REPO/bootstrap/check_wheels.py" "$@" ;;
        shell) setup; exec bash --rcfile <(printf 'source ~/.bashrc 2>/dev/null; source %q\n' "$REPO/bootstrap/activate.sh") -i ;;
        -h|--help|help) sed -n '2,24p' "$0" ;;
        *) die "unknown command '$command': expected setup, env, demo, test, doctor, shell, ray, gpu-check or check-wheels" ;;
    esac
}

# Sourcing (tests do) defines the functions without running anything.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
