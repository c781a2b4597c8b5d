# shellcheck shell=bash
# Source this file (bash or zsh) for a shell where ROS, the dl_vision workspace and its Python env
# are active, and where `python3`, rosrun and roslaunch nodes all use the env's interpreter:
#
#   source bootstrap/activate.sh
#
# It sidesteps what usually comes first on a robot's PATH (an Anaconda base env, a pyenv shim)
# without editing ~/.bashrc. Run `bash bootstrap/setup.sh` once before.

_dlv_home=${DL_VISION_HOME:-$HOME/.dl_vision}
if [ -x "$_dlv_home/conda/bin/python3" ] && { [ "${DL_VISION_ENV:-}" = conda ] || [ ! -x "$_dlv_home/venv/bin/python3" ]; }; then
    _dlv_env=$_dlv_home/conda
else
    _dlv_env=$_dlv_home/venv
fi

if [ ! -x "$_dlv_env/bin/python3" ] || [ ! -f "$_dlv_home/ws/devel/setup.bash" ]; then
    echo "dl_vision: no env at $_dlv_env or no built workspace at $_dlv_home/ws: run 'bash bootstrap/setup.sh' first" >&2
    unset _dlv_home _dlv_env
    # Sourced: return; run as a script by mistake: exit.
    # shellcheck disable=SC2317
    return 1 2>/dev/null || exit 1
fi

# Leave an active conda env (base included): its python3, libstdc++ and PYTHONPATH clash with ROS's.
if [ -n "${CONDA_PREFIX:-}" ] && command -v conda >/dev/null 2>&1; then
    while [ "${CONDA_SHLVL:-0}" -gt 0 ] 2>/dev/null; do
        conda deactivate 2>/dev/null || break
    done
fi
# Without conda's shell function (conda never ran `conda init` here, or it refused), drop the
# env's bin from PATH by hand.
if [ -n "${CONDA_PREFIX:-}" ]; then
    PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$CONDA_PREFIX/bin" | paste -sd: -)
    unset CONDA_PREFIX CONDA_DEFAULT_ENV CONDA_SHLVL CONDA_PROMPT_MODIFIER
fi
# A leaked PYTHONHOME or PYTHONPATH from another Python breaks or shadows ROS's modules, and so
# do pip --user installs in ~/.local (a --system-site-packages venv still reads them).
unset PYTHONHOME PYTHONPATH
export PYTHONNOUSERSITE=1
# Leave another venv (its deactivate function, if any).
if [ -n "${VIRTUAL_ENV:-}" ] && [ "${VIRTUAL_ENV}" != "$_dlv_env" ] && command -v deactivate >/dev/null 2>&1; then
    deactivate nondestructive 2>/dev/null || true
fi

# ROS (Ubuntu: /opt/ros/noetic; Debian bookworm: nothing to source), then the workspace overlay.
# setup.bash / setup.zsh come from catkin; both work with `set -u` switched off, so switch it
# off around them and restore it.
case $- in *u*) _dlv_nounset=1; set +u ;; *) _dlv_nounset=0 ;; esac
if [ -n "${ZSH_VERSION:-}" ]; then _dlv_shell=zsh; else _dlv_shell=bash; fi
if [ -f "/opt/ros/noetic/setup.$_dlv_shell" ]; then
    # shellcheck disable=SC1090
    . "/opt/ros/noetic/setup.$_dlv_shell"
fi
# shellcheck disable=SC1090
. "$_dlv_home/ws/devel/setup.$_dlv_shell"
if [ "$_dlv_nounset" = 1 ]; then set -u; fi

# The env's interpreter first on PATH: `python3`, and every `#!/usr/bin/env python3` node that
# rosrun/roslaunch starts, resolve to it even with a pyenv shim or conda earlier on PATH.
export VIRTUAL_ENV=$_dlv_env
export PATH="$_dlv_env/bin:$PATH"
export ROS_PYTHON_VERSION=3
export DL_VISION_HOME=$_dlv_home
hash -r 2>/dev/null || true
unset _dlv_home _dlv_env _dlv_nounset _dlv_shell
