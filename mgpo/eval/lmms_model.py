"""The lmms-eval chat model ``mgpo``: each request runs through mgpo's Engine (multi-turn grounding, any backend).

lmms-eval hands over all requests of a task at once; they go to the engine together as a lazy sequence (a doc is
fetched and its image decoded only when the engine reaches it), which pipelines them per sample on a concurrent
backend (openai: ``concurrency`` requests in flight) or runs them in chunks of the hf backend's ``batch_size`` (one
call per turn per chunk), and each finished sample is recorded at once (see mgpo.eval.run_log), so a killed run
resumes where it stopped. What lmms-eval gets back is the engine's stored
``Trajectory.response`` with its score; nothing here parses model text. mgpo_* task docs carry the question and
options separately, as the protocol needs (choices only in turn 2). Requests from other tasks (lmms-eval's own
``vstar_bench``, ...) are refused with one line naming the matching mgpo_* task: their prompt carries the options
and their scorers misread \\boxed{} answers.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lmms_eval.api.model import lmms
from PIL import Image

from mgpo.engine import DEFAULT_MODEL, Engine, build_engine
from mgpo.errors import MgpoError
from mgpo.eval.run_log import RunLog, merge_parts, process_index, process_log
from mgpo.eval.tasks import doc_image, stock_task_error
from mgpo.options import PROTOCOL_NAMES, foreign_options, split_options
from mgpo.options import backend_options as backend_option_values
from mgpo.protocol import ProtocolConfig
from mgpo.sampling import Sampling
from mgpo.scoring import Score, ScoredResponse
from mgpo.types import Sample, Trajectory


def response_text(traj: Trajectory) -> ScoredResponse:
    """What lmms-eval gets for a sample: the engine's scored text (``Trajectory.response``, the final turn, spec §5),
    or "" for a failed sample, carrying the engine's own score of it, so the task's scorer uses the run's --scoring
    and lmms-eval's numbers equal results.json's."""
    text = "" if traj.error else traj.response
    return ScoredResponse(text, Score(traj.answer, traj.answer_source or "none", traj.correct))


def recorded_response(row: dict[str, Any]) -> ScoredResponse:
    """A recorded row's response with its score, for --resume: read from its trajectory as stored (a version-1 row,
    which stored no response, gives its final turn)."""
    return response_text(Trajectory.from_dict(row["trajectory"]))


def union_box(boxes: list[list[float]]) -> list[float] | None:
    if not boxes:
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _suffix(data: bytes) -> str:
    """A file suffix for an embedded image's bytes, from the format in its header (nothing is decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a bomb's header is still a header
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format
    except Exception:  # not an image Pillow knows (or a bomb it refuses to open): the run recorded why
        fmt = None
    if not fmt:
        return ".img"
    return {"JPEG": ".jpg", "TIFF": ".tif"}.get(fmt, f".{fmt.lower()}")


def doc_sample(doc: dict[str, Any], request_args: tuple, sample_id: str) -> Sample:
    """A Sample from an mgpo_* doc (question and options apart)."""
    if {"question", "options", "answer", "image_path"} <= set(doc):
        if doc.get("image_error"):
            raise MgpoError(doc["image_error"])
        image = doc_image(doc)
        if image is None or (isinstance(image, str) and not image):
            raise MgpoError(f"sample {sample_id}: the doc has no image (neither an embedded image nor a path)")
        boxes = [list(b) for b in doc.get("gt_boxes") or []]
        meta = {"category": doc.get("category"), "gt_boxes": boxes, "option_order": list(doc.get("option_order") or [])}
        return Sample(image, doc["question"], list(doc["options"]), doc["answer"], sample_id, union_box(boxes), meta)
    raise MgpoError("this doc is not an mgpo_* task doc (question, options, answer, image_path)")


class LazySamples(Sequence[Sample]):
    """Samples built when the engine asks for one (in its loader threads), kept until ``take`` hands them back:
    docs stream through the run instead of all being fetched and decoded first."""

    def __init__(self, builders: list[Callable[[], Sample]]):
        self._builders = builders
        self._built: dict[int, Sample] = {}
        self._lock = threading.Lock()  # one doc fetch at a time: a datasets table is not documented thread-safe

    def __len__(self) -> int:
        return len(self._builders)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        with self._lock:
            sample = self._built.get(index) or self._builders[index]()
            self._built[index] = sample
        return sample

    def take(self, index: int) -> Sample:
        """The built sample, dropped from here (its record is being written)."""
        with self._lock:
            return self._built.pop(index)


class MgpoModel(lmms):
    """lmms-eval model wrapping mgpo's Engine. model_args: pretrained, backend, protocol, responses (scripted
    backend), batch_size, trajectories (append each finished sample to this JSONL file; under several processes
    each rank appends to its own part, merged into the file at the end), resume, and every option of mgpo.options
    under its CLI name (max_turns, parsing, coords, box_policy, pixel limits, device, dtype, attn_implementation,
    vision_cache_mb, base_url, ..., sampling, temperature, top_p, seed)."""

    is_simple = False

    def __init__(
        self,
        pretrained: str = DEFAULT_MODEL,
        backend: str = "hf",
        protocol: str = "paper",
        responses: str | None = None,
        device: str | None = "auto",
        dtype: str = "auto",
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        trajectories: str | None = None,
        resume: bool = False,
        mode: str = "grounded",
        engine: Engine | None = None,
        run_log: RunLog | None = None,
        sampling: Sampling | None = None,
        temperature: float | str | None = None,
        top_p: float | str | None = None,
        seed: int | str | None = None,
        **options: Any,
    ):
        super().__init__()
        # model_args text (temperature=1.0,seed=3) or the runner's Sampling; a preset by name: sampling=paper
        if not isinstance(sampling, Sampling):
            sampling = Sampling.make(sampling, temperature, top_p, seed)
        self.sampling = sampling
        # model_args and mgpo's CLI share one option table (mgpo.options): same names, converted from text there
        known, unknown = split_options(options)
        if unknown:
            raise MgpoError(f"unknown mgpo model_args: {', '.join(sorted(unknown))} (see mgpo.options)")
        self.batch_size_per_gpu = max(1, int(batch_size or 1))
        if engine is None:
            max_image_pixels = known.get("max_image_pixels")
            proto = {k: v for k, v in known.items() if k in PROTOCOL_NAMES}
            try:
                cfg = ProtocolConfig.from_preset(protocol, **proto)
            except ValueError as exc:
                raise MgpoError(str(exc)) from exc
            foreign = foreign_options(backend, known) if backend != "scripted" else []
            if foreign:
                raise MgpoError(f"the {backend} backend does not take model_args {', '.join(foreign)}")
            given = {"device": device, "dtype": dtype, **known}
            backend_options = backend_option_values(backend, given)
            if backend == "hf":
                backend_options["batch_size"] = self.batch_size_per_gpu
            if backend != "scripted":
                backend_options["decoding"] = sampling
            engine = build_engine(backend, str(pretrained), cfg, responses, max_image_pixels, **backend_options)
        if getattr(engine.backend, "name", "") == "scripted" and not getattr(engine.backend, "by_id", True):
            raise MgpoError('under lmms-eval, key scripted responses by sample id: {"id": ..., "turns": [...]}')
        self.engine = engine
        self.mode = mode
        rank, world = process_index()
        if world > 1:
            # several processes: lmms-eval shards the docs by rank and gathers through this Accelerator; without
            # cpu=True, CPU-only ranks never form their (gloo) group and each would evaluate alone
            import torch
            from accelerate import Accelerator

            self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        # given a run_log (mgpo eval), its owner merges the ranks' parts; given trajectories= (the lmms-eval CLI),
        # this model does: each rank appends to its own part, merged into the file when generation ends
        self._parts: list[Path] = []
        self._trajectories = Path(trajectories) if trajectories else None
        if run_log is None and trajectories:
            run_log, self._parts = process_log(trajectories, None, bool(resume), rank, world)
        self.run_log = run_log
        self.requested: set[tuple[str, str, int, int]] = set()  # keys lmms-eval asked for: what a run's results cover

    @property
    def device(self) -> Any:
        """Where lmms-eval puts the tensors it gathers over ranks: the Accelerator's device (the one it builds for
        a multi-process run sets up the process group), else the CPU."""
        accelerator = getattr(self, "accelerator", None)
        if accelerator is not None:
            return accelerator.device
        import torch

        return torch.device("cpu")

    # lmms-eval's abstract interface -----------------------------------------------------------------------------

    def loglikelihood(self, requests):
        raise NotImplementedError("the mgpo model only generates (generate_until tasks)")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("the mgpo model runs its own multi-turn loop; use generate_until tasks")

    def generate_until(self, requests) -> list[str]:
        results: list[str | None] = [None] * len(requests)
        seen: Counter[tuple[str, int]] = Counter()
        pending: list[tuple[int, dict[str, Any]]] = []
        builders: list[Callable[[], Sample]] = []
        refused = next((m for r in requests if (m := stock_task_error(r.args[-2]))), None)
        if refused:  # before any generation: a stock task's numbers would be silently wrong
            raise MgpoError(refused)
        for i, req in enumerate(requests):
            if (getattr(req, "metadata", None) or {}).get("__padding_only__"):
                results[i] = ""  # lmms-eval's filler that evens out the ranks' request counts: never run or kept
                continue
            args = req.args
            doc_id, task = args[-3], args[-2]
            repeat = seen[(task, doc_id)]  # lmms-eval lists a request's repeats one after another
            seen[(task, doc_id)] += 1
            key = {"mode": self.mode, "task": task, "doc_id": int(doc_id), "repeat": repeat}
            self.requested.add((self.mode, task, int(doc_id), repeat))
            done = self.run_log.done.get((self.mode, task, int(doc_id), repeat)) if self.run_log else None
            if done is not None:
                results[i] = recorded_response(done)
                continue
            pending.append((i, key))
            builders.append(lambda args=args, key=key: self._sample(args, key))
        if self.run_log and self.run_log.on_total:
            self.run_log.on_total(len(pending))
        samples = LazySamples(builders)

        def on_done(j: int, traj: Trajectory) -> None:  # each sample recorded as it finishes: a kill loses none
            i, key = pending[j]
            sample = samples.take(j)
            if sample.meta.get("doc_error"):
                traj.error, traj.error_kind = sample.meta["doc_error"], "input"
                traj.correct, traj.answer = (False if traj.ground_truth else None), None
            results[i] = response_text(traj)
            if self.run_log:
                self.run_log.write(self._row(key, sample, traj, results[i]))

        # the engine schedules (one place, bounded memory); the hf backend's chunks are its own batch_size
        self.engine.run(samples, on_done=on_done)
        if self._parts:
            self._merge_parts()
        return [r if r is not None else "" for r in results]

    def _merge_parts(self) -> None:
        """Rank 0 merges every rank's part into the trajectories file once all ranks are done (lmms-eval calls
        generate_until once per process, the shorter shares padded with a filler, so every rank gets here)."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            merge_parts(self._trajectories, self._parts)
        self.accelerator.wait_for_everyone()

    def _sample(self, args: tuple, key: dict[str, Any]) -> Sample:
        """The Sample of one request, built when the engine reaches it; a broken doc becomes a failed sample."""
        task, split, doc_id, repeat = key["task"], args[-1], args[-3], key["repeat"]
        doc = self.task_dict[task][split][doc_id]
        sample_id = str(doc.get("question_id") or f"{task}:{doc_id}")
        try:
            sample = doc_sample(doc, args, sample_id)
        except Exception as exc:  # a broken doc is recorded as a failed sample; the run goes on
            sample = Sample(Image.new("RGB", (1, 1)), str(args[0]), [], doc.get("answer"), sample_id)
            sample.meta["doc_error"] = f"cannot build sample: {exc}"
        sample.meta["seed_key"] = f"{task}:{int(doc_id)}:{repeat}"  # the same draw on every run and --resume
        sample.meta["sampling"] = self.sampling.to_dict()
        return sample

    def _row(self, key: dict[str, Any], sample: Sample, traj: Trajectory, response: str) -> dict[str, Any]:
        assert self.run_log is not None
        if traj.image_path is None and isinstance(sample.image, Image.Image | bytes):
            # embedded / in-memory images: saved once so `mgpo show` can render the trajectory later; embedded bytes
            # as they are (what the run decoded, EXIF and all), an in-memory image as PNG
            suffix = _suffix(sample.image) if isinstance(sample.image, bytes) else ".png"
            path = self.run_log.images_dir / f"{key['task']}_{key['doc_id']}{suffix}"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".part" + suffix)
                if isinstance(sample.image, bytes):
                    tmp.write_bytes(sample.image)
                else:
                    sample.image.convert("RGB").save(tmp, compress_level=1)
                tmp.replace(path)  # atomic: a kill never leaves a half-written image behind
            traj.image_path = str(path.resolve())
        elif traj.image_path:
            traj.image_path = str(Path(traj.image_path).resolve())
        prediction = traj.answer
        return {
            **key,
            "question_id": sample.id,
            "category": sample.meta.get("category"),
            "prediction": prediction,
            "ground_truth": traj.ground_truth,
            "correct": traj.correct,  # None: no ground truth, unscored (not wrong)
            "option_order": sample.meta.get("option_order"),
            "response": response,
            "trajectory": traj.to_dict(),
        }
