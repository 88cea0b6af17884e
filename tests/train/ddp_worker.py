"""Run by `accelerate launch --num_processes 2 --cpu` in test_train_ddp: `mgpo train` as the CLI runs it, with the
final save wrapped so that every rank writes a checksum of its own weights (rank{R}.json) before the model is saved.

    ddp_worker.py DATA MODEL OUT MAX_STEPS [RESUME]
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import mgpo.train.run as run
from mgpo.train.config import make_config

SMALL = {"min_pixels": 28 * 28 * 16, "max_pixels": 28 * 28 * 64, "crop_min_pixels": 28 * 28 * 16,
         "crop_max_pixels": 28 * 28 * 64}  # fmt: skip


def main() -> None:
    data, model, out, steps = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    resume = sys.argv[5] if len(sys.argv) > 5 else None
    real_save = run.save_final

    def save_with_checksums(trainer, processor, out_dir, cfg):
        model = trainer.accelerator.unwrap_model(trainer.model)
        digest = hashlib.sha256()
        for name, p in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(p.detach().cpu().contiguous().numpy().tobytes())
        rank = trainer.accelerator.process_index
        record = {"rank": rank, "world": trainer.accelerator.num_processes, "sha": digest.hexdigest(),
                  "step": trainer.state.global_step}  # fmt: skip
        (out_dir / f"rank{rank}.json").write_text(json.dumps(record))
        real_save(trainer, processor, out_dir, cfg)

    run.save_final = save_with_checksums
    cfg = make_config(
        algo="mgpo", data=data, model=model, output_dir=str(out), turn_max_new_tokens=24, protocol=dict(SMALL),
        resume_from_checkpoint=resume, rewards=["accuracy", "format"],
        trl={"max_steps": steps, "num_generations": 2, "per_device_train_batch_size": 2, "learning_rate": 0.05,
             "save_strategy": "steps", "save_steps": 1, "max_completion_length": 600, "seed": 0},
    )  # fmt: skip
    run.train(cfg, echo=print)


if __name__ == "__main__":
    main()
