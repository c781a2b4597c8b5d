"""TensorRT engines built from ONNX models: the builder, INT8 calibration and the engine cache.

``build_engine`` (:mod:`dl_vision.engines.cli`) builds an engine for one precision and shape
profile; a spec with ``format: onnx`` and ``runtime: {engine: tensorrt, ...}`` gets its engine from
the cache (:mod:`dl_vision.engines.cache`), built on first use. The TensorRT API differs between
8.5 (JetPack 5), 10.x and 11.x; :mod:`dl_vision.engines.trt_api` holds every branch. TensorRT is
imported only when an engine is built or loaded.
"""
