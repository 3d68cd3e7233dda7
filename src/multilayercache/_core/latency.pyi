from multilayercache._core._latency_py import Recorder as Recorder
