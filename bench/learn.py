"""The learning check: from the tiny model, does `mgpo train` learn what the reward asks, through both turns?

    python bench/learn.py --out DIR [--seed 0] [--threads 2] [--only sft|answer|box] [--stretch]

The task: a 448x448 image with a black frame at the top right that holds a coloured patch (red or blue) among grey
clutter (with LEARN_DISTRACTOR=1, also a patch of the other colour elsewhere, so that only the framed region tells
the answer). Question: which colour is the patch in the frame? (A) red (B) blue. Rows are drawn from the seed; the
held-out rows (64) are never trained on. The full image is shown at 224x224 (64 visual tokens), the crop at 224x224
too (64 tokens: the patch fills most of them, so the colour reaches the answer position of a 2-layer model with
nearly uniform attention; at 112x112 the 16 crop tokens were too faint a share of the ~1200-token sequence).

Runs, each a real `mgpo train` (mgpo.train.run.train, TRL underneath) on the tiny Qwen2.5-VL (random weights):

1. Warm start on format: two-turn SFT (``--algo sft --max-turns 2``) on rows whose answer letter is drawn at random,
   so the model learns to write the box JSON, then ``\\boxed{letter}`` after the crop, but not which letter: its
   letter probability is the same on every image, and its held-out reward is near chance.
2. MGPO with the paper's binary accuracy reward from that start: held-out reward (greedy, through the same engine
   `mgpo infer` runs) before and after. The answer is written in turn 2, after a turn-1 box. Two ablations on the
   same held-out rows say where the answer comes from: the crop with its red and blue channels swapped (a model
   that reads the crop flips every answer: reward 0; one that answered from turn 1's whole image would keep 1), and
   turn 1's box thrown away (turn 2 sees the whole image, as on fallback).
3. MGPO with only a valid turn-1 box rewarded (``--reward valid_box``), from its own warm start: two-turn SFT from
   the tiny model on rows whose turn-1 box is the frame on 40% of them and NARROW on the rest (the frame's box with
   x2 one digit off, 22 px wide in the model frame, under the rules' 28 px minimum: turn 2 sees the whole image).
   That model writes either box, so the rollouts of one prompt differ in reward and GRPO has a signal, and which
   box it writes is a turn-1 token. Printed: the valid-box ratio of the training rollouts (32 per step), first ->
   last step and the mean of the first 2 -> last 2 steps.

RL settings (both runs): lr 1e-3 (constant), 4 prompts x 8 rollouts per step, T 0.5, beta 0.04 (k3 KL), 40 steps
for the answer run and 6 for the box run. The RL rows alternate A, B, A, B and are read in order
(``shuffle_dataset=False``), so every step's four prompts are half red and half blue: with shuffled rows a step's
imbalance (3 of 4 red) pushes the one letter bias, a random walk that made the letter near-certain (the rollouts of a
prompt all alike, so no signal: 50-100% of groups with zero reward spread) before the colour was learned; seed 1
never learned that way. Measured 2026-12-06 on 2 idle CPUs, seed 0: held-out reward 0.484 -> 1.000 (crop colours
swapped 0.000, answered 1.000; box thrown away 0.000, no answer written), train reward 0.281 -> 0.906; valid-box
ratio 0.250 -> 0.938 (first 2 -> last 2: 0.359 -> 0.891); 302 s wall. Seed 1: 0.391 -> 1.000; 0.375 -> 0.969.

``--stretch``: the paper's claim at toy scale, on FINE (the same layout at 1792x1792 with a 64 px patch: 8 px in the
full image's 224x224 view, under a third of one 28-px visual token, 56 px in the crop): MGPO (two-turn format warm
start, the ground-truth box as turn 1) against single-turn GRPO (one-turn format warm start), each from the same
tiny model with the same RL budget; held-out reward after each. Measured 2026-12-06, seed 0: not the paper's gain
yet: MGPO 0.469 -> 0.531 with its turn-1 JSON broken from step 22 on (valid box 0), GRPO 0.469 -> 0.469.

Curves (reward, valid-box ratio, KL, entropy per step) are in each run's train_log.jsonl and drawn to
DIR/<run>/curves.png (`mgpo plot`). The last line printed is ``held-out reward X`` (run 2, after training).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw


@dataclasses.dataclass(frozen=True)
class Task:
    """Where the answer sits: a ``size`` x ``size`` image, a black frame (original pixels) holding a coloured patch
    of side ``patch``, among grey clutter scaled to the image."""

    size: int = 448
    frame: tuple[int, int, int, int] = (320, 64, 384, 128)  # 64x64 original pixels, 32x32 in the model frame
    patch: int = 48

    @property
    def scale(self) -> int:
        return self.size // 448


MAIN = Task()
# the stretch's task: the same layout at 4x the resolution, so that the full image's 224x224 view shows the patch
# 8 px wide (under a third of one 28-px visual token) and only the crop (the frame's 256 px at 224x224) shows it
# clearly, 56 px wide: what the paper claims grounding is for
FINE = Task(size=1792, frame=(1280, 256, 1536, 512), patch=64)
DISTRACTOR = os.environ.get("LEARN_DISTRACTOR", "0") == "1"
# the valid-box run's invalid box: the frame's box with x2 one digit off, [160, 32, 182, 64] in the model frame
# (192 -> 182), 22 px wide, under the rules' minimum side (28): which box turn 1 writes is one token
NARROW = [MAIN.frame[0], MAIN.frame[1], MAIN.frame[2] - 20, MAIN.frame[3]]
COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220)}
CHOICES = ["red", "blue"]
QUESTION = "What colour is the patch inside the black frame?"
# pixel limits: the full image's view is 224x224 (64 visual tokens), and so is the crop's (MAIN: 64x64 upscaled)
PROTOCOL = {"min_pixels": 112 * 112, "max_pixels": 224 * 224, "crop_min_pixels": 224 * 224,
            "crop_max_pixels": 224 * 224, "max_new_tokens": 72}  # fmt: skip


def draw_row(rng: random.Random, task: Task = MAIN) -> tuple[Image.Image, str]:
    """One image and its answer colour."""
    size, k = task.size, task.scale
    base = rng.randint(110, 160)
    img = Image.new("RGB", (size, size), (base, base, base))
    draw = ImageDraw.Draw(img)
    for _ in range(12 * k * k):  # clutter, so no two images are alike
        x, y = rng.randint(0, size - 40 * k), rng.randint(0, size - 40 * k)
        g = rng.randint(60, 200)
        draw.rectangle([x, y, x + rng.randint(10, 40) * k, y + rng.randint(10, 40) * k], fill=(g, g, g))
    colour = rng.choice(CHOICES)
    other = CHOICES[1 - CHOICES.index(colour)]
    # the distractor: the other colour, the same size, anywhere in the left or bottom part
    if DISTRACTOR:
        dx, dy = rng.randint(16, 240) * k, rng.randint(200, 380) * k
        draw.rectangle([dx, dy, dx + task.patch, dy + task.patch], fill=COLOURS[other])
    draw.rectangle(task.frame, outline=(0, 0, 0), width=4 * k)
    x1, y1, x2, y2 = task.frame
    inset = (x2 - x1 - task.patch) // 2
    draw.rectangle([x1 + inset, y1 + inset, x2 - inset, y2 - inset], fill=COLOURS[colour])
    return img, colour


def write_task(
    folder: Path,
    n: int,
    seed: int,
    answers: str = "true",
    valid_share: float = 1.0,
    task: Task = MAIN,
    balanced: bool = False,
) -> Path:
    """Write ``n`` rows (generic schema, gt_box = the frame) and their PNGs; return the JSONL path.

    ``answers="random"``: the answer letter is drawn at random, not read from the image (the format warm start).
    ``valid_share`` < 1: that share of rows keeps the real box, the rest name NARROW, too narrow to crop (the rules
    refuse it and turn 2 sees the whole image): the warm start of the valid-box run."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        img, colour = draw_row(rng, task)
        name = f"img_{seed}_{i}.png"
        img.save(folder / name)
        letter = "AB"[CHOICES.index(colour)] if answers == "true" else rng.choice("AB")
        box = list(task.frame) if rng.random() < valid_share else NARROW
        rows.append({"id": f"{seed}-{i}", "image_path": name, "question": QUESTION, "choices": CHOICES,
                     "answer": letter, "gt_box": box})  # fmt: skip
    if balanced:  # A, B, A, B, ...: read in order (shuffle_dataset=False), every step's prompts are half each
        by = [[r for r in rows if r["answer"] == x] for x in "AB"]
        rows = [r for pair in zip(*by, strict=False) for r in pair]
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------------------------------------------------------


def train(out: Path, data: Path, model: str, algo: str, steps: int, turns: int = 2, **settings: Any) -> Path:
    """One real `mgpo train` run (the library call the CLI makes); the output directory holds the final model.
    ``turns``: for --algo sft, 2 (the MGPO conversation, the ground-truth box as turn 1) or 1 (the direct prompt)."""
    from mgpo.train.config import make_config
    from mgpo.train.run import train as run_train

    rewards = settings.pop("rewards", None)
    protocol = {**PROTOCOL, **({"max_turns": turns} if algo == "sft" else {})}
    cfg = make_config(
        algo=algo, data=str(data), model=model, output_dir=str(out), protocol=protocol, rewards=rewards,
        turn_max_new_tokens=PROTOCOL["max_new_tokens"],
        trl={"max_steps": steps, "save_strategy": "no", "report_to": "none", "lr_scheduler_type": "constant",
             "warmup_steps": 0, **settings},
    )  # fmt: skip
    result = run_train(cfg, echo=lambda line: print(f"  [{out.name}] {line}", flush=True))
    return result.output_dir


def held_out(model: str, data: Path, ablation: str | None = None, single_turn: bool = False) -> dict[str, float]:
    """Greedy reward on held-out rows through the engine `mgpo infer` / `mgpo eval` run. ``ablation`` (where does the
    answer come from?): "swapped" shows turn 2 the crop with its red and blue channels swapped (a red patch turns
    blue and back; grey and black stay), so a model that reads the crop flips its answer while one that answers from
    turn 1's whole image does not; "fallback" throws turn 1's box away, so turn 2 sees the whole image.
    ``single_turn``: the direct prompt (the GRPO baseline's protocol)."""
    import mgpo.episode
    import mgpo.grounding
    from mgpo.engine import build_engine
    from mgpo.protocol import ProtocolConfig
    from mgpo.train.data import load_training_data, open_image
    from mgpo.types import Sample

    cfg = (ProtocolConfig.direct() if single_turn else ProtocolConfig.paper()).with_options(**PROTOCOL)
    rows = load_training_data(str(data))
    samples = [Sample(open_image(r["image"]), r["question"], list(r["choices"]), r["answer"], id=r["id"])
               for r in rows]  # fmt: skip
    engine = build_engine("hf", model, cfg, device="cpu", batch_size=32)
    check, crop = mgpo.grounding.check_box, mgpo.episode.crop_original
    if ablation == "fallback":
        mgpo.grounding.check_box = lambda box, frame: "ablation: the box is thrown away"
    elif ablation == "swapped":
        mgpo.episode.crop_original = lambda original, box: swap_red_blue(crop(original, box))
    try:
        trajs = engine.run(samples)
    finally:
        mgpo.grounding.check_box, mgpo.episode.crop_original = check, crop
    n = len(trajs)
    valid = sum(1 for t in trajs if t.turns and t.turns[0].box_original is not None)
    answered = sum(1 for t in trajs if t.answer is not None)
    return {"reward": sum(bool(t.correct) for t in trajs) / n, "valid_box": valid / n, "answered": answered / n, "n": n}


def swap_red_blue(image: Image.Image) -> Image.Image:
    r, g, b = image.convert("RGB").split()
    return Image.merge("RGB", (b, g, r))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["sft", "answer", "box"], default=None, help="run one part (development)")
    ap.add_argument("--stretch", action="store_true", help="MGPO against single-turn GRPO on the fine task instead")
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
        print("  without the box:", held_out(str(m), test, ablation="fallback"))
        return 0
    env = os.environ.get
    lr, steps, prompts, g = float(env("LEARN_LR", "1e-3")), int(env("LEARN_STEPS", "40")), 4, 8
    rl = {
        "learning_rate": lr,
        "num_generations": g,
        "per_device_train_batch_size": g * prompts,
        "beta": float(env("LEARN_BETA", "0.04")),
        "temperature": float(env("LEARN_T", "0.5")),
        "seed": args.seed,
        "shuffle_dataset": False,  # the rows in their balanced order (write_task(balanced=True))
    }
    if args.stretch:
        return stretch(out, tiny, rl, steps, args.seed, t0)
    rl_data = write_task(out / "data" / "train", 512, seed=1 + args.seed, balanced=True)
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
    swapped = held_out(str(answer), test, ablation="swapped")
    no_box = held_out(str(answer), test, ablation="fallback")
    end = held_out(str(answer), test)
    rewards = curve(answer, "reward")
    summary["answer_run"] = {"held_out_before": start, "held_out_after": end,
                             "held_out_after_crop_colours_swapped": swapped,
                             "held_out_after_box_thrown_away": no_box,
                             "train_reward_first_last": [rewards[0], rewards[-1]]}  # fmt: skip
    finish(out, summary, pngs, t0)
    print(
        f"held-out reward with the crop's red and blue swapped {swapped['reward']:.3f} "
        f"(answered {swapped['answered']:.3f}; 0 if the answer is read from the crop, 1 if from turn 1's view)"
    )
    print(f"held-out reward with the box thrown away (whole image in turn 2) {no_box['reward']:.3f} "
          f"(answered {no_box['answered']:.3f})")  # fmt: skip
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
    settings = {**rl, "temperature": float(env("LEARN_BOX_T", str(rl["temperature"]))),
                "learning_rate": float(env("LEARN_BOX_LR", str(rl["learning_rate"])))}  # fmt: skip
    run = train(out / "box", rl_data, str(warm), "mgpo", int(env("LEARN_BOX_STEPS", "6")), rewards=["valid_box"],
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


def stretch(out: Path, tiny: str, rl: dict[str, Any], steps: int, seed: int, t0: float) -> int:
    """The paper's claim at toy scale, on FINE (the patch too small to read in the full image's view): each algorithm
    from the same tiny model, warm-started by SFT on its own protocol's format (MGPO: two turns, the ground-truth box
    as turn 1; GRPO: the direct prompt; answers drawn at random), then the same RL budget; held-out reward after."""
    test = write_task(out / "data" / "fine_held_out", 64, seed=10_000 + seed, task=FINE)
    warm_data = write_task(out / "data" / "fine_warm", 256, seed=seed, answers="random", task=FINE)
    rl_data = write_task(out / "data" / "fine_train", 512, seed=1 + seed, task=FINE, balanced=True)
    import torch

    summary: dict[str, Any] = {"seed": seed, "threads": torch.get_num_threads(), "task": dataclasses.asdict(FINE),
                               "settings": {"rl": rl, "steps": steps}}  # fmt: skip
    pngs: list[Path] = []
    from mgpo.train.curves import plot_run

    for algo, turns in (("mgpo", 2), ("grpo", 1)):
        warm = train(out / f"{algo}_warm", warm_data, tiny, "sft", 60, turns=turns, learning_rate=3e-3,
                     per_device_train_batch_size=8, seed=seed)  # fmt: skip
        before = held_out(str(warm), test, single_turn=turns == 1)
        run = train(out / algo, rl_data, str(warm), algo, steps, **rl)
        pngs.append(plot_run(run))
        after = held_out(str(run), test, single_turn=turns == 1)
        summary[algo] = {"held_out_before": before, "held_out_after": after,
                         "train_reward_per_step": curve(run, "reward")}  # fmt: skip
        print(f"stretch {algo}: held-out reward {before['reward']:.3f} -> {after['reward']:.3f}", flush=True)
    finish(out, summary, pngs, t0)
    a, b = summary["mgpo"]["held_out_after"]["reward"], summary["grpo"]["held_out_after"]["reward"]
    print(f"held-out reward after the same RL budget: MGPO {a:.3f}, single-turn GRPO {b:.3f}")
    return 0


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
