"""Benchmark: model-only, in-process pipeline and through-ROS timings of our node against a naive one."""
