"""kairo_inference detecting objects in 640x480 camera frames, against an Image echo plus raw onnxruntime.

    python bench/inference_detection.py [--pings 300] [--flood 600] [--rounds 3] [--seconds 10] [--model PATH]

The path measured is the whole of what a camera user gets: a 640x480 rgb8
sensor_msgs/Image received by kairo_inference (its own process, model_path,
reliable input QoS), letterboxed into the model's input (kairo_features'
ImageReader), the model run (non-maximum suppression is inside the graph),
the rows above the score threshold mapped back to the frame's pixels and
published as a Detection2DArray on /detections. The baseline, measured in the
same run: an rclpy node echoing the same Image, plus one raw onnxruntime run
on the tensor the node's own letterbox makes of that frame (the conversion is
the node's work, so the baseline does not get it). Figures, per round:
round trip p50/p99 and their ratio to the baseline; the sustained rate with
at most --window frames in flight, against the echo's; then a camera's rate:
frames sent at 30 Hz for --seconds, answered and dropped. The model: an
object_detection model trained by the real backend (the demo dataset, a short
run), or --model.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import threading
import time

import numpy as np
import onnxruntime as ort
from inference_common import GROUP, Loop, model_file, percentiles, stamped_frames, start, timed
from sensor_msgs.msg import Image

from kairo_features.schema import features_from_metadata
from kairo_interfaces.msg import Detection2DArray
from kairo_ros.inference.wiring import build_wiring
from kairo_ros.testing.graph import SpinningNode

CAMERA = (640, 480)
CAMERA_HZ = 30.0
TRAIN_EPOCHS = 8  # as test_detection trains: a detector that finds the demo's objects


def camera_pixels(width: int, height: int) -> np.ndarray:
    """A camera frame's rgb8 pixels: noise and a few solid boxes."""
    pixels = np.random.default_rng(3).integers(0, 96, (height, width, 3), dtype=np.uint8)
    for x1, y1, x2, y2, colour in ((40, 60, 200, 220, (230, 40, 40)), (380, 100, 600, 300, (40, 40, 230)),
                                   (250, 330, 330, 470, (40, 230, 40))):
        pixels[y1:y2, x1:x2] = colour
    return pixels


def paced(loop: Loop, seconds: float, hz: float, first: int) -> tuple[int, int, float]:
    """Send frames at `hz` for `seconds` (a camera); (sent, answered, answered per second)."""
    count = int(seconds * hz)
    start_answered = loop.answered
    started = time.perf_counter()
    for i in range(count):
        delay = started + i / hz - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        loop.send(first + i)
    with loop.cond:
        loop.cond.wait_for(lambda: loop.answered - start_answered >= count, timeout=5.0)
    answered = loop.answered - start_answered
    return count, answered, answered / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--flood", type=int, default=600)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="the camera-rate run's length, per round")
    parser.add_argument("--model", type=pathlib.Path, help="an object_detection model exported by the backend")
    args = parser.parse_args()
    try:
        path = model_file(args.model, "object_detection", 300, TRAIN_EPOCHS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        features = features_from_metadata(session.get_modelmeta().custom_metadata_map)
        reader = build_wiring(features).inputs[0].reader
        channels, height, width = features.inputs[0].shape
        frame, make = stamped_frames(camera_pixels(*CAMERA))
        tensor = reader.read(frame)[None]  # what the node feeds the model for this frame
        name = features.inputs[0].name
        timed(lambda: session.run(None, {name: tensor}), 50)
        ort_p50, ort_p99 = percentiles(timed(lambda: session.run(None, {name: tensor}), 1000))
        box_p50, box_p99 = percentiles(timed(lambda: reader.read(frame), 500))
        print(f"model {path}: input {channels}x{height}x{width}; frames {CAMERA[0]}x{CAMERA[1]} rgb8, letterboxed "
              f"(scale {reader.letterbox.scale_x:.3f}, pad {reader.letterbox.pad_x},{reader.letterbox.pad_y})")
        print(f"raw onnxruntime run on the converted tensor  p50 {ort_p50:8.1f} us   p99 {ort_p99:8.1f} us")
        print(f"letterbox of one frame (in the node's path)  p50 {box_p50:8.1f} us   p99 {box_p99:8.1f} us")

        echo_node = start("echo", [sys.executable, str(pathlib.Path(__file__).with_name("inference_echo_node.py")),
                                   "image"])
        inference = start("kairo_inference", ["kairo_inference", "--ros-args", "-p", f"model_path:={path}",
                                              "-p", "input_qos:=reliable", "--log-level", "warn"])
        with SpinningNode("kairo_bench_detection") as ros:
            echo = Loop(ros, "/bench/echo_in", "/bench/echo_out", Image, make)
            served = Loop(ros, features.inputs[0].topic, features.outputs[0].topic, Detection2DArray, make)
            found: list[int] = []
            seen = threading.Event()

            def count_detections(msg: Detection2DArray) -> None:
                if not seen.is_set():
                    found.append(len(msg.detections))
                    seen.set()
            ros.node.create_subscription(Detection2DArray, features.outputs[0].topic, count_detections, 10)
            for i in range(30):
                echo.ping(10_000 + i)
                served.ping(10_000 + i)
            print(f"detections in the frame: {found[0] if found else 'none seen'}")
            rounds = []
            for r in range(args.rounds):
                base = 100_000 + r * 1_000_000
                echo_rt, served_rt = [], []
                for i in range(args.pings):
                    echo_rt.append(echo.ping(base + i))
                    served_rt.append(served.ping(base + i))
                (echo_p50, echo_p99), (inf_p50, inf_p99) = percentiles(echo_rt), percentiles(served_rt)
                echo_rate, echo_dropped = echo.flood(args.flood, args.window, base + 100_000)
                inf_rate, inf_dropped = served.flood(args.flood, args.window, base + 200_000)
                sent, answered, camera_rate = paced(served, args.seconds, CAMERA_HZ, base + 300_000)
                base_p50, base_p99 = echo_p50 + ort_p50, echo_p99 + ort_p99
                rounds.append((inf_p50 / base_p50, inf_p99 / base_p99, inf_rate / echo_rate, inf_rate,
                               inf_dropped, sent - answered, camera_rate))
                print(f"round {r + 1}")
                print(f"  Image echo round trip            p50 {echo_p50:8.1f} us   p99 {echo_p99:8.1f} us")
                print(f"  baseline (echo + onnxruntime)    p50 {base_p50:8.1f} us   p99 {base_p99:8.1f} us")
                print(f"  kairo_inference detection trip   p50 {inf_p50:8.1f} us   p99 {inf_p99:8.1f} us")
                print(f"  ratio detection / baseline       p50 {rounds[-1][0]:8.2f}x     p99 {rounds[-1][1]:8.2f}x")
                print(f"  sustained, {args.window} in flight: echo {echo_rate:6.0f} Hz (dropped {echo_dropped}), "
                      f"kairo_inference {inf_rate:6.0f} fps (dropped {inf_dropped}); ratio {rounds[-1][2]:.2f}")
                print(f"  a {CAMERA_HZ:.0f} Hz camera for {args.seconds:g} s: {sent} frames sent, {answered} answered "
                      f"({camera_rate:.1f} fps), dropped {sent - answered}", flush=True)
        assert echo_node.alive and inference.alive
        column = [np.array([r[k] for r in rounds]) for k in range(7)]
        print(f"median of {len(rounds)} rounds: p50 ratio {np.median(column[0]):.2f}x, p99 ratio "
              f"{np.median(column[1]):.2f}x; sustained {np.median(column[3]):.0f} fps (ratio to echo "
              f"{np.median(column[2]):.2f}), drops {int(column[4].sum())}; at {CAMERA_HZ:.0f} Hz: "
              f"{np.median(column[6]):.1f} fps, drops {int(column[5].sum())}")
        return 0
    finally:
        GROUP.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
