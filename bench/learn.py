"""The learning check: from the tiny model, does `mgpo train` learn what the reward asks, through both turns?

    python bench/learn.py --out DIR [--seed 0] [--only sft|answer|box]

The task: a 448x448 image with a black frame at the top right that holds a coloured patch (red or blue) among grey
clutter (with LEARN_DISTRACTOR=1, also a patch of the other colour elsewhere, so that only the framed region tells
the answer). Question: which colour is the patch in the frame? (A) red (B) blue. Rows are drawn from the seed; the
held-out rows are never trained on.

Runs, each a real `mgpo train` (mgpo.train.run.train, TRL underneath) on the tiny Qwen2.5-VL (random weights):

1. Warm start on format: two-turn SFT (``--algo sft --max-turns 2``) on rows whose answer letter is drawn at random,
   so the model learns to write the box JSON, then ``\\boxed{letter}`` after the crop, but not which letter: its
   held-out reward starts near chance (0.5).
2. MGPO with the paper's binary accuracy reward from that start: held-out reward (greedy, through the same engine
   `mgpo infer` runs) before and after. The answer is written in turn 2, after a turn-1 box; the run ends with an
   ablation on the same held-out rows where turn 1's box is thrown away (the model is shown the whole image, as on
   fallback), to show that the box matters.
3. MGPO with only a valid turn-1 box rewarded (``--reward valid_box``), from its own warm start: two-turn SFT from
   the tiny model on rows whose turn-1 box is the frame on 40% of them and NARROW on the rest (the frame's box with
   x2 one digit off, 22 px wide in the model frame, under the rules' 28 px minimum: turn 2 sees the whole image).
   That model writes either box, so the rollouts of one prompt differ in reward and GRPO has a signal, and which
   box it writes is a turn-1 token. Printed: the valid-box ratio of the training rollouts (32 per step, T=0.5),
   first -> last step and the mean of the first 2 -> last 2 steps. Measured 2026-12-04, seed 0, lr 3e-4, 5 steps:
   0.250, 0.344, 0.625, 0.719, 0.750 (first 2 -> last 2: 0.297 -> 0.734; KL 0.021 at step 5). Not further: a 6th
   step at 3e-4 breaks the box JSON (box found in 47% of rollouts, valid 0.406), and at the answer run's 1e-3 the
   ratio reached 0.969 at step 4 and then 0.0 (no box parsed at all). The earlier version of this run (the format
   warm start sampled at T=1.0) measured 0.188 -> 0.156: there turn 1's JSON broke in most rollouts.

Curves (reward, valid-box ratio, KL, entropy per step) are in each run's train_log.jsonl and drawn to
DIR/<run>/curves.png (`mgpo plot`). The last line printed is ``held-out reward X`` (run 2, after training).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

SIZE = 448
FRAME = [320, 64, 384, 128]  # the region that holds the answer, original pixels: 64x64 (32x32 in the model frame)
DISTRACTOR = os.environ.get("LEARN_DISTRACTOR", "0") == "1"
# the valid-box run's invalid box: the frame's box with x2 one digit off, [160, 32, 182, 64] in the model frame
# (192 -> 182), 22 px wide, under the rules' minimum side (28): which box turn 1 writes is one token
NARROW = [FRAME[0], FRAME[1], FRAME[2] - 20, FRAME[3]]
COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220)}
CHOICES = ["red", "blue"]
QUESTION = "What colour is the patch inside the black frame?"
# pixel limits: the full image's view is 224x224 (64 visual tokens), the crop is shown at 112x112 (16 tokens)
PROTOCOL = {"min_pixels": 112 * 112, "max_pixels": 224 * 224, "crop_min_pixels": 112 * 112,
            "crop_max_pixels": 224 * 224, "max_new_tokens": 72}  # fmt: skip


def draw_row(rng: random.Random) -> tuple[Image.Image, str]:
    """One image and its answer colour."""
    base = rng.randint(110, 160)
    img = Image.new("RGB", (SIZE, SIZE), (base, base, base))
    draw = ImageDraw.Draw(img)
    for _ in range(12):  # clutter, so no two images are alike
        x, y = rng.randint(0, SIZE - 40), rng.randint(0, SIZE - 40)
        g = rng.randint(60, 200)
        draw.rectangle([x, y, x + rng.randint(10, 40), y + rng.randint(10, 40)], fill=(g, g, g))
    colour = rng.choice(CHOICES)
    other = CHOICES[1 - CHOICES.index(colour)]
    # the distractor: the other colour, the same size, anywhere in the left or bottom part
    if DISTRACTOR:
        dx, dy = rng.randint(16, 240), rng.randint(200, 380)
        draw.rectangle([dx, dy, dx + 48, dy + 48], fill=COLOURS[other])
    draw.rectangle(FRAME, outline=(0, 0, 0), width=4)
    x1, y1, x2, y2 = FRAME
    draw.rectangle([x1 + 8, y1 + 8, x2 - 8, y2 - 8], fill=COLOURS[colour])
    return img, colour


def write_task(folder: Path, n: int, seed: int, answers: str = "true", valid_share: float = 1.0) -> Path:
    """Write ``n`` rows (generic schema, gt_box = the frame) and their PNGs; return the JSONL path.

    ``answers="random"``: the answer letter is drawn at random, not read from the image (the format warm start).
    ``valid_share`` < 1: that share of rows keeps the real box, the rest name NARROW, too narrow to crop (the rules
    refuse it and turn 2 sees the whole image): the warm start of the valid-box run."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        img, colour = draw_row(rng)
        name = f"img_{seed}_{i}.png"
        img.save(folder / name)
        letter = "AB"[CHOICES.index(colour)] if answers == "true" else rng.choice("AB")
        box = FRAME if rng.random() < valid_share else NARROW
        rows.append({"id": f"{seed}-{i}", "image_path": name, "question": QUESTION, "choices": CHOICES,
                     "answer": letter, "gt_box": box})  # fmt: skip
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------------------------------------------------------


def train(out: Path, data: Path, model: str, algo: str, steps: int, **settings: Any) -> Path:
    """One real `mgpo train` run (the library call the CLI makes); the output directory holds the final model."""
    from mgpo.train.config import make_config
    from mgpo.train.run import train as run_train

    rewards = settings.pop("rewards", None)
    protocol = {**PROTOCOL, **({"max_turns": 2} if algo == "sft" else {})}
    cfg = make_config(
        algo=algo, data=str(data), model=model, output_dir=str(out), protocol=protocol, rewards=rewards,
        turn_max_new_tokens=PROTOCOL["max_new_tokens"],
        trl={"max_steps": steps, "save_strategy": "no", "report_to": "none", "lr_scheduler_type": "constant",
             "warmup_steps": 0, **settings},
    )  # fmt: skip
    result = run_train(cfg, echo=lambda line: print(f"  [{out.name}] {line}", flush=True))
    return result.output_dir


def held_out(model: str, data: Path, fallback: bool = False) -> dict[str, float]:
    """Greedy reward on held-out rows through the engine `mgpo infer` / `mgpo eval` run; ``fallback``: turn 1's box
    is thrown away, so turn 2 sees the whole image (the box-matters ablation)."""
    import mgpo.grounding
    from mgpo.engine import build_engine
    from mgpo.protocol import ProtocolConfig
    from mgpo.train.data import load_training_data, open_image
    from mgpo.types import Sample

    cfg = ProtocolConfig.paper().with_options(**PROTOCOL)
    rows = load_training_data(str(data))
    samples = [Sample(open_image(r["image"]), r["question"], list(r["choices"]), r["answer"], id=r["id"])
               for r in rows]  # fmt: skip
    engine = build_engine("hf", model, cfg, device="cpu", batch_size=32)
    real = mgpo.grounding.check_box
    if fallback:
        mgpo.grounding.check_box = lambda box, frame: "ablation: the box is thrown away"
    try:
        trajs = engine.run(samples)
    finally:
        mgpo.grounding.check_box = real
    n = len(trajs)
    valid = sum(1 for t in trajs if t.turns and t.turns[0].box_original is not None)
    return {"reward": sum(bool(t.correct) for t in trajs) / n, "valid_box": valid / n, "n": n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["sft", "answer", "box"], default=None, help="run one part (development)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    from mgpo.tiny import build_tiny_model

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    tiny = str(build_tiny_model(out / "tiny", seed=args.seed, hidden_size=64))
    test = write_task(out / "data" / "held_out", 64, seed=10_000 + args.seed)
    if args.only == "sft":  # can the tiny model learn image -> answer at all? (SFT on the true answers)
        data = write_task(out / "data" / "sft_true", 256, seed=args.seed)
        lr = float(os.environ.get("LEARN_LR", "3e-3"))
        m = train(out / "sft_true", data, tiny, "sft", 60, learning_rate=lr, per_device_train_batch_size=8)
        print("sft on true answers:", held_out(str(m), test), f"({time.time() - t0:.0f}s)")
        print("  without the box:", held_out(str(m), test, fallback=True))
        return 0
    env = os.environ.get
    lr, steps, prompts, g = float(env("LEARN_LR", "1e-3")), int(env("LEARN_STEPS", "20")), 4, 8
    rl = {
        "learning_rate": lr,
        "num_generations": g,
        "per_device_train_batch_size": g * prompts,
        "beta": float(env("LEARN_BETA", "0.01")),
        "temperature": float(env("LEARN_T", "0.5")),
        "seed": args.seed,
    }
    rl_data = write_task(out / "data" / "train", 512, seed=1 + args.seed)
    summary: dict[str, Any] = {"seed": args.seed, "threads": args.threads, "settings": {"rl": rl, "steps": steps}}
    pngs: list[Path] = []
    from mgpo.train.curves import plot_run

    # 3 first (it is short), so that the answer run's held-out reward is the last figure printed
    if args.only in (None, "box"):
        box_run, box = valid_box_run(out, tiny, rl_data, test, rl, args.seed)
        pngs.append(plot_run(box_run))
        summary["box_run"] = box
    if args.only == "box":
        finish(out, summary, pngs, t0)
        return 0

    # 1. warm start on format; answers drawn at random
    warm_data = write_task(out / "data" / "warm", 256, seed=args.seed, answers="random")
    warm = train(out / "warm", warm_data, tiny, "sft", 60, learning_rate=3e-3, per_device_train_batch_size=8,
                 seed=args.seed)  # fmt: skip
    start = held_out(str(warm), test)
    print(f"warm start: held-out reward {start['reward']:.3f}, valid box {start['valid_box']:.3f}", flush=True)

    # 2. MGPO, the paper's binary accuracy reward
    answer = train(out / "answer", rl_data, str(warm), "mgpo", steps, **rl)
    pngs.insert(0, plot_run(answer))
    no_box = held_out(str(answer), test, fallback=True)
    end = held_out(str(answer), test)
    rewards = curve(answer, "reward")
    summary["answer_run"] = {"held_out_before": start, "held_out_after": end,
                             "held_out_after_box_thrown_away": no_box,
                             "train_reward_first_last": [rewards[0], rewards[-1]]}  # fmt: skip
    finish(out, summary, pngs, t0)
    print(f"held-out reward with the box thrown away (whole image in turn 2) {no_box['reward']:.3f}")
    print(f"held-out reward {start['reward']:.3f} -> {end['reward']:.3f} (n={end['n']}, greedy, after MGPO)")
    print(f"held-out reward {end['reward']:.3f}")
    return 0


def valid_box_run(out: Path, tiny: str, rl_data: Path, test: Path, rl: dict[str, Any], seed: int):
    """Run 3: its own warm start, two-turn SFT from the tiny model on rows whose box is the frame on a share of them
    (LEARN_BOX_SHARE, 0.4) and NARROW on the rest, then MGPO with only a valid turn-1 box rewarded."""
    env = os.environ.get
    share = float(env("LEARN_BOX_SHARE", "0.4"))
    data = write_task(out / "data" / "box_warm", 256, seed=2 + seed, answers="random", valid_share=share)
    warm = train(out / "box_warm", data, tiny, "sft", int(env("LEARN_BOX_WARM_STEPS", "60")), learning_rate=3e-3,
                 per_device_train_batch_size=8, seed=seed)  # fmt: skip
    # its own learning rate: at the answer run's 1e-3 the ratio rose to 0.97 in 4 steps, then the box JSON broke
    settings = {**rl, "temperature": float(env("LEARN_BOX_T", str(rl["temperature"]))),
                "learning_rate": float(env("LEARN_BOX_LR", "3e-4"))}  # fmt: skip
    run = train(out / "box", rl_data, str(warm), "mgpo", int(env("LEARN_BOX_STEPS", "5")), rewards=["valid_box"],
                **settings)  # fmt: skip
    ratio = curve(run, "mgpo/valid_box_ratio")
    k = min(2, len(ratio) // 2) or 1
    first, last = sum(ratio[:k]) / k, sum(ratio[-k:]) / k
    box = {"valid_box_first_last": [ratio[0], ratio[-1]], "valid_box_mean_first_last": [first, last],
           "mean_over_steps": k, "valid_box_per_step": ratio, "warm_valid_share": share,
           "settings": settings}  # fmt: skip
    print(f"box run: valid-box ratio {ratio[0]:.3f} -> {ratio[-1]:.3f} (train rollouts, first -> last step), "
          f"mean of the first {k} -> last {k} steps {first:.3f} -> {last:.3f}", flush=True)  # fmt: skip
    return run, box


def finish(out: Path, summary: dict[str, Any], pngs: list[Path], t0: float) -> None:
    """Time and CPU figures, summary.json, and the lines that say where things are."""
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary["wall_s"] = round(time.time() - t0, 1)
    summary["cpu_s"] = round(cpu.ru_utime + cpu.ru_stime + child.ru_utime + child.ru_stime, 1)
    summary["plots"] = [str(p) for p in pngs]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"curves: {', '.join(str(p) for p in pngs)}; summary: {out / 'summary.json'}")
    print(f"time: {summary['wall_s']:.0f} s wall, {summary['cpu_s']:.0f} s CPU ({summary['threads']} threads)")


def curve(run: Path, key: str) -> list[float]:
    """One figure per step from a run's train_log.jsonl."""
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines() if line.strip()]
    return [float(r[key]) for r in rows if key in r]


if __name__ == "__main__":
    sys.exit(main())
