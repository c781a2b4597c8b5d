"""Through-ROS measurement: camera publishers at a set rate, the node under test, a probe.

Everything here runs inside the benchmark process except the node under test,
which runs as its own process (started with ``rosrun``) so that its CPU time and
memory can be read from /proc. Latency is the probe's receive time minus the
input image's header stamp, which every detection array carries unchanged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import xmlrpc.client
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import rosgraph
import rospy
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dl_vision.benchmark.procfs import ProcessSampler
from dl_vision.benchmark.summary import latency_growth
from dl_vision.errors import ConfigError
from dl_vision.latency import summarize_ms
from dl_vision.messages import bgr_to_image_msg
from dl_vision.msg import DetectionArray

#: Seconds the node under test may take to import its runtime and load the model.
STARTUP_TIMEOUT_S = 180.0


def ensure_master(timeout_s: float = 30.0) -> Optional[subprocess.Popen]:
    """Start ``roscore`` on the port of ``ROS_MASTER_URI`` when no master answers there.

    Returns:
        The roscore process this call started (stop it with :func:`stop_process`),
        or None when a master was already running.

    Raises:
        ConfigError: roscore did not answer within ``timeout_s``.
    """
    if rosgraph.is_master_online():
        return None
    port = str(rosgraph.get_master_uri().rstrip("/").rsplit(":", 1)[-1])
    proc = subprocess.Popen(
        ["roscore", "-p", port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if rosgraph.is_master_online():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    stop_process(proc)
    raise ConfigError("roscore on port %s: expected it to answer within %.0f s, found no master" % (port, timeout_s))


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGINT the process group (how roslaunch stops nodes), then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def node_pid(node_name: str) -> Optional[int]:
    """Process id of a running node, asked through its XML-RPC API (as ``rosnode info`` does)."""
    try:
        uri = rosgraph.Master("/dl_vision_benchmark").lookupNode(node_name)
        code, _, pid = xmlrpc.client.ServerProxy(uri).getPid("/dl_vision_benchmark")
    except (rosgraph.MasterError, OSError, xmlrpc.client.Error):
        return None
    return int(pid) if code == 1 else None


class CameraPublishers:
    """Publishes one frame on several camera topics at a fixed rate per camera.

    Cameras are staggered evenly within each period, as free-running cameras are,
    and every message gets a fresh header stamp just before it is published. The
    schedule is absolute, so a late publish does not slow the offered rate; when
    more than one period late it skips ahead (a driver cannot send frames it
    never captured).

    Args:
        topics: one image topic per camera.
        frame: (H, W, 3) uint8 BGR image sent on every topic.
        rate_hz: frames per second per camera.
        queue_size: rospy publisher queue (camera drivers use a small one).
    """

    def __init__(self, topics: Sequence[str], frame: np.ndarray, rate_hz: float, queue_size: int = 10) -> None:
        if rate_hz <= 0:
            raise ConfigError("publish rate: expected a positive rate in Hz, found %r" % rate_hz)
        self.rate_hz = float(rate_hz)
        self.publishers = [rospy.Publisher(t, Image, queue_size=queue_size) for t in topics]
        self.messages = [bgr_to_image_msg(frame, Header(frame_id="bench_camera_%d" % i)) for i in range(len(topics))]
        self.sent: List[List[float]] = [[] for _ in topics]
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def wait_for_subscribers(self, timeout_s: float) -> bool:
        """True once every topic has at least one subscriber connected."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.get_num_connections() > 0 for p in self.publishers):
                return True
            time.sleep(0.1)
        return False

    def publish_once(self, camera: int) -> float:
        """Publish camera ``camera``'s frame now; returns its stamp (wall seconds)."""
        msg = self.messages[camera]
        stamp = rospy.Time.from_sec(time.time())
        msg.header.stamp = stamp
        msg.header.seq += 1
        # rospy serialises inside publish(), so the message can be reused right after.
        self.publishers[camera].publish(msg)
        # The float the receiving side computes from the same stamp, so they compare equal.
        return stamp.to_sec()

    def start(self, duration_s: float) -> None:
        """Publish on a background thread for ``duration_s`` seconds."""
        self._thread = threading.Thread(target=self._run, args=(duration_s,), name="camera-publishers", daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Wait for the publishing run to end."""
        if self._thread is not None:
            self._thread.join()

    def stop(self) -> None:
        """End the publishing run early."""
        self._stop.set()
        self.join()

    def _run(self, duration_s: float) -> None:
        n = len(self.publishers)
        period = 1.0 / self.rate_hz
        start = time.monotonic()
        end = start + duration_s
        k = 0
        while not self._stop.is_set() and not rospy.is_shutdown():
            due = start + (k // n) * period + (k % n) * period / n
            if due >= end:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:
                # Fell a whole period behind (the machine is saturated): resume from now.
                k += n * int(-delay / period)
                continue
            camera = k % n
            self.sent[camera].append(self.publish_once(camera))
            k += 1


class FrameTimeProbe:
    """Records the "frame time median (ms)" our nodes report in ``/diagnostics``, with arrival times.

    The naive node reports no diagnostics, so its list stays empty.

    Args:
        node_names: resolved names of the nodes under test.
    """

    def __init__(self, node_names: Sequence[str]) -> None:
        self.names = [name.lstrip("/") for name in node_names]
        self.reports: List[tuple] = []
        self.subscriber = rospy.Subscriber("/diagnostics", DiagnosticArray, self._callback, queue_size=100)

    def _callback(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("frames") and any(name in status.name for name in self.names):
                values = {kv.key: kv.value for kv in status.values}
                if "frame time median (ms)" in values:
                    self.reports.append((time.time(), float(values["frame time median (ms)"])))

    def median_between(self, start: float, end: float) -> Optional[float]:
        """Median of the reports received between two wall times, ms (None without any)."""
        inside = [ms for t, ms in self.reports if start <= t <= end]
        return round(float(np.median(inside)), 3) if inside else None

    def close(self) -> None:
        """Unsubscribe."""
        self.subscriber.unregister()


class OutputProbe:
    """Subscribes to the detection outputs and records when each one arrives.

    Attributes:
        received: per camera, ``(receive wall time, input stamp)`` pairs.
    """

    def __init__(self, topics: Sequence[str]) -> None:
        self.received: List[List[tuple]] = [[] for _ in topics]
        self.subscribers = [
            rospy.Subscriber(t, DetectionArray, self._callback, callback_args=i, queue_size=None, tcp_nodelay=True)
            for i, t in enumerate(topics)
        ]

    def _callback(self, msg: DetectionArray, camera: int) -> None:
        self.received[camera].append((time.time(), msg.header.stamp.to_sec()))

    def counts(self) -> List[int]:
        """Outputs received so far per camera."""
        return [len(r) for r in self.received]

    def close(self) -> None:
        """Unsubscribe."""
        for s in self.subscribers:
            s.unregister()


class NodeUnderTest:
    """A node process started for one measurement and stopped after it.

    Args:
        argv: the command (``["rosrun", "dl_vision", ...]``), remappings included.
        node_names: names of the ROS nodes the command starts (one process each
            is sampled for CPU and RSS; several when the command is a launch file).
    """

    def __init__(self, argv: Sequence[str], node_names: Sequence[str]) -> None:
        self.argv = list(argv)
        self.node_names = list(node_names)
        self.proc: Optional[subprocess.Popen] = None
        self.pids: List[int] = []

    def start(self, log_path: Optional[str] = None) -> None:
        """Start the command in its own process group, output to ``log_path`` (default: discarded).

        Private parameters an earlier run left on the master under the node names (``_param:=``
        values outlive their node) are deleted first, so that every run starts from its own argv.
        """
        for name in self.node_names:
            if rospy.has_param(name):
                rospy.delete_param(name)
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_pids(self, timeout_s: float) -> List[int]:
        """Process ids of all its nodes, once each registered with the master.

        Raises:
            ConfigError: the command exited or its nodes did not register in time.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ConfigError(
                    "%s: expected a running node, found it exited with status %d"
                    % (" ".join(self.argv), self.proc.returncode)
                )
            pids = [node_pid(n) for n in self.node_names]
            if all(p is not None for p in pids):
                self.pids = [int(p) for p in pids]
                return self.pids
            time.sleep(0.2)
        raise ConfigError(
            "%s: expected nodes %s to register within %.0f s" % (" ".join(self.argv), self.node_names, timeout_s)
        )

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop the process group."""
        if self.proc is not None:
            stop_process(self.proc)


def _combine_samplers(samplers: Sequence[ProcessSampler], start: float, end: float) -> Dict[str, Optional[float]]:
    """CPU and RSS of several processes summed over one window."""
    parts = [s.summary(start, end) for s in samplers]
    if any(p["cpu_percent"] is None for p in parts):
        return parts[0] if len(parts) == 1 else {k: None for k in parts[0]}
    first = sum(p["rss_mb_first"] for p in parts)
    last = sum(p["rss_mb_last"] for p in parts)
    return {
        "cpu_percent": round(sum(p["cpu_percent"] for p in parts), 1),
        "rss_mb_first": round(first, 1),
        "rss_mb_last": round(last, 1),
        "rss_mb_max": round(sum(p["rss_mb_max"] for p in parts), 1),
        "rss_growth_percent": round(100.0 * (last - first) / first, 2),
    }


def measure_node(
    nodes: Sequence[NodeUnderTest],
    image_topics: Sequence[str],
    output_topics: Sequence[str],
    frame: np.ndarray,
    rate_hz: float,
    duration_s: float,
    warmup_s: float,
    drain_s: float = 2.0,
    log_path: Optional[str] = None,
    progress: Optional[Callable[[str], None]] = None,
    sample_interval_s: float = 0.5,
) -> Dict[str, object]:
    """Start ``nodes``, feed them ``frame`` at ``rate_hz`` per camera, and measure what comes out.

    The node is warmed up first (frames at 5 Hz until every camera is answered:
    the first inferences build the runtime's caches). Then the measured run
    publishes for ``duration_s``; frames stamped in its first ``warmup_s`` are
    left out of the statistics, and outputs arriving later than ``drain_s`` after
    the last publish count as unanswered.

    Returns:
        JSON-ready dict: ``offered_hz`` (per camera, as achieved), ``published``,
        ``answered``, ``answered_fraction``, ``throughput_hz`` (outputs per second,
        all cameras), ``latency_ms`` (summary), ``latency_growth``,
        ``process`` (CPU and RSS), ``alive_after``, per-camera latency p50s and
        ``node_frame_time_ms`` (median of the node's reported frame time during the run).
    """
    say = progress or (lambda _msg: None)
    publishers = CameraPublishers(image_topics, frame, rate_hz)
    probe = OutputProbe(output_topics)
    names = [n for node in nodes for n in node.node_names]
    frame_times = FrameTimeProbe(names)
    for i, node in enumerate(nodes):
        node.start(None if log_path is None else "%s.%d" % (log_path, i))
    try:
        pids = [p for node in nodes for p in node.wait_pids(STARTUP_TIMEOUT_S)]
        if not publishers.wait_for_subscribers(STARTUP_TIMEOUT_S):
            raise ConfigError(
                "nodes %s: expected them to subscribe to %s, found no subscriber" % (names, list(image_topics))
            )
        say("node up (pid %s); warming up" % ",".join(map(str, pids)))
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while min(probe.counts()) < 3:
            if time.monotonic() > deadline or not all(node.alive() for node in nodes):
                raise ConfigError(
                    "nodes %s: expected outputs on %s, found none during warm-up" % (names, list(output_topics))
                )
            for camera in range(len(image_topics)):
                publishers.publish_once(camera)
            time.sleep(0.2)
        time.sleep(1.0)
        for r in probe.received:
            r.clear()

        samplers = [ProcessSampler(pid, sample_interval_s).start() for pid in pids]
        say("publishing %d camera(s) at %.1f Hz for %.0f s" % (len(image_topics), rate_hz, duration_s))
        t_start_wall, t_start_mono = time.time(), time.monotonic()
        publishers.start(duration_s)
        publishers.join()
        t_end_mono = time.monotonic()
        time.sleep(drain_s)
        for s in samplers:
            s.stop()
        alive = all(node.alive() for node in nodes)
    finally:
        probe.close()
        frame_times.close()
        for p in publishers.publishers:
            p.unregister()
        for node in nodes:
            node.stop()

    window_start = t_start_wall + warmup_s
    window_len = duration_s - warmup_s
    published = sum(sum(1 for t in sent if t >= window_start) for sent in publishers.sent)
    per_camera_p50 = []
    recv_times: List[float] = []
    latencies: List[float] = []
    answered = 0
    for sent, received in zip(publishers.sent, probe.received):
        sent_stamps = {t for t in sent if t >= window_start}
        rows = [(r, s) for r, s in received if s in sent_stamps]
        answered += len(rows)
        cam_lat = [1000.0 * (r - s) for r, s in rows]
        per_camera_p50.append(summarize_ms(cam_lat)["p50"])
        recv_times.extend(r for r, _ in rows)
        latencies.extend(cam_lat)
    order = np.argsort(recv_times)
    recv_sorted = np.asarray(recv_times)[order]
    lat_sorted = np.asarray(latencies)[order]
    offered = [sum(1 for t in sent if t >= window_start) / window_len for sent in publishers.sent]
    return {
        "offered_hz": round(float(np.mean(offered)), 2) if offered else None,
        "published": published,
        "answered": answered,
        "answered_fraction": round(answered / published, 4) if published else None,
        "throughput_hz": round(answered / window_len, 2),
        "latency_ms": summarize_ms(lat_sorted),
        "latency_growth": latency_growth(recv_sorted, lat_sorted),
        "per_camera_latency_p50_ms": per_camera_p50,
        # The node's own per-frame processing time while loaded (its diagnostics), when it reports one.
        "node_frame_time_ms": frame_times.median_between(window_start, t_start_wall + duration_s + drain_s),
        "process": _combine_samplers(samplers, t_start_mono + warmup_s, t_end_mono),
        "alive_after": alive,
    }
