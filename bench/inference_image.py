"""kairo_inference on camera images: round trip and sustained rate, against an Image echo plus raw onnxruntime.

    python bench/inference_image.py [--pings 500] [--flood 2000] [--rounds 3] [--model PATH]

A detection model trained by the real backend (object_detection, 2 epochs)
is served by kairo_inference in its own process (model_path, reliable input
QoS). Each message is one rgb8 sensor_msgs/Image at the model's input size,
so no resize happens (bench/inference_detection.py measures 640x480 camera
frames, letterboxed, and the Detection2DArray path). The baseline, measured in the same
run: an rclpy node echoing the same Image, plus one raw onnxruntime run on
the tensor the node's own conversion makes of that Image. Goals: round trip
p50 and p99 <= 1.15x the baseline; sustained rate >= 0.9x the echo's, no drops.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
import onnxruntime as ort
from inference_common import GROUP, Loop, model_file, percentiles, stamped_frames, start, timed
from sensor_msgs.msg import Image

from kairo_features.schema import features_from_metadata
from kairo_interfaces.msg import Prediction
from kairo_ros.inference.wiring import build_wiring
from kairo_ros.testing.graph import SpinningNode


def flood(loop: Loop, count: int, window: int, first: int) -> tuple[float, float, int]:
    rate, dropped = loop.flood(count, window, first)
    return (count - dropped) / rate, count - dropped, dropped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--flood", type=int, default=2000)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", type=pathlib.Path, help="an object_detection model exported by the backend")
    args = parser.parse_args()
    try:
        path = model_file(args.model, "object_detection", 300)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        features = features_from_metadata(session.get_modelmeta().custom_metadata_map)
        reader = build_wiring(features).inputs[0].reader
        channels, height, width = features.inputs[0].shape
        frame, make = stamped_frames(np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8))
        tensor = reader.read(frame)[None]  # what the node feeds the model for this frame
        name = features.inputs[0].name
        timed(lambda: session.run(None, {name: tensor}), 100)
        ort_p50, ort_p99 = percentiles(timed(lambda: session.run(None, {name: tensor}), 2000))
        print(f"model {path}: input {width}x{height} rgb8 ({channels}x{height}x{width} float32); every message "
              f"here is {width}x{height} (camera frames: bench/inference_detection.py)")
        print(f"raw onnxruntime run on the converted tensor  p50 {ort_p50:8.1f} us   p99 {ort_p99:8.1f} us")

        echo_node = start("echo", [sys.executable, str(pathlib.Path(__file__).with_name("inference_echo_node.py")),
                                   "image"])
        inference = start("kairo_inference", ["kairo_inference", "--ros-args", "-p", f"model_path:={path}",
                                              "-p", "input_qos:=reliable", "--log-level", "warn"])
        with SpinningNode("kairo_bench_image") as ros:
            echo = Loop(ros, "/bench/echo_in", "/bench/echo_out", Image, make)
            served = Loop(ros, features.inputs[0].topic, "/kairo/kairo_inference/prediction", Prediction, make)
            for i in range(50):
                echo.ping(10_000 + i)
                served.ping(10_000 + i)
            ratios = []
            for r in range(args.rounds):
                base = 100_000 + r * 1_000_000
                echo_rt, served_rt = [], []
                for i in range(args.pings):
                    echo_rt.append(echo.ping(base + i))
                    served_rt.append(served.ping(base + i))
                (echo_p50, echo_p99), (inf_p50, inf_p99) = percentiles(echo_rt), percentiles(served_rt)
                totals = {"echo": [0.0, 0.0, 0], "inference": [0.0, 0.0, 0]}
                chunk = max(args.window, args.flood // 10)
                for c in range(0, args.flood, chunk):
                    for key, loop in (("echo", echo), ("inference", served)):
                        seconds, answered, dropped = flood(loop, min(chunk, args.flood - c), args.window,
                                                           base + 100_000 + c)
                        totals[key][0] += seconds
                        totals[key][1] += answered
                        totals[key][2] += dropped
                echo_rate = totals["echo"][1] / totals["echo"][0]
                inf_rate = totals["inference"][1] / totals["inference"][0]
                base_p50, base_p99 = echo_p50 + ort_p50, echo_p99 + ort_p99
                ratios.append((inf_p50 / base_p50, inf_p99 / base_p99, inf_rate / echo_rate,
                               int(totals["inference"][2])))
                print(f"round {r + 1}")
                print(f"  Image echo round trip         p50 {echo_p50:8.1f} us   p99 {echo_p99:8.1f} us")
                print(f"  baseline (echo + onnxruntime) p50 {base_p50:8.1f} us   p99 {base_p99:8.1f} us")
                print(f"  kairo_inference round trip    p50 {inf_p50:8.1f} us   p99 {inf_p99:8.1f} us")
                print(f"  ratio inference / baseline    p50 {ratios[-1][0]:8.2f}x     p99 {ratios[-1][1]:8.2f}x"
                      f"   (goal <= 1.15)")
                print(f"  sustained rate: echo {echo_rate:7.0f} Hz (dropped {int(totals['echo'][2])}), "
                      f"kairo_inference {inf_rate:7.0f} Hz (dropped {ratios[-1][3]}); ratio "
                      f"{ratios[-1][2]:.2f} (goal >= 0.9, no drops)", flush=True)
        assert echo_node.alive and inference.alive
        p50s, p99s, rates = (np.array([r[k] for r in ratios]) for k in range(3))
        print(f"median of {len(ratios)} rounds: p50 ratio {np.median(p50s):.2f}x  p99 ratio {np.median(p99s):.2f}x"
              f"  (goal <= 1.15); rate ratio {np.median(rates):.2f} (goal >= 0.9); kairo_inference drops "
              f"{sum(r[3] for r in ratios)}")
        return 0
    finally:
        GROUP.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
