"""The multi-turn grounding loop, written once for infer, eval and train.

Each sample's turn goes to the backend, then the system takes its step (mgpo.episode.Episode: parse the box,
validate, map, crop the ORIGINAL image, build the next user message). A sample stops once it has answered (from turn
2 on) or reached ``max_turns``. The engine adds what a batch needs around the episode: loading images, scheduling,
token counts and caps, per-sample errors, scoring and the trajectory record. It knows nothing about tokenisation;
backends do.

Two schedules, with the same per-sample results (every request depends only on its own sample's conversation):

- turn-synchronous, for batching backends (hf): chunks of ``batch_size`` samples, one backend call per turn per
  chunk, so a GPU batch holds many samples;
- pipelined, for concurrent backends (openai: a backend with ``generate_one`` and ``concurrency``): each sample
  sends its next turn the moment its previous one returns, up to ``concurrency`` requests in flight, while loader
  threads decode and pre-resize the next samples' images (a bounded lookahead). A served model with continuous
  batching then sees a steady stream of requests, and one long turn-1 generation holds up nobody else's turn 2.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgpo import families, imaging, protocol
from mgpo.backends import make_backend
from mgpo.backends.base import Backend, Generation, Request
from mgpo.episode import Episode
from mgpo.errors import INTERNAL_HINT, MgpoError, debug_traceback, is_bug, one_line
from mgpo.protocol import ProtocolConfig
from mgpo.scoring import score_response
from mgpo.types import Sample, Trajectory, Turn

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
MAX_LOAD_THREADS = 8
DEFAULT_BATCH_SIZE = 8  # samples in flight when neither the caller nor the backend says


@dataclass
class InFlight:
    """The engine's bookkeeping for one sample: its Episode (the protocol's state), its record, its token counts."""

    index: int
    sample: Sample
    trajectory: Trajectory
    episode: Episode | None = None  # None when the input could not be loaded
    done: bool = False
    first_prompt_tokens: int | None = None  # where the response starts, when the backend counts tokens
    output_tokens: int | None = 0  # the model's tokens so far; None once a turn went uncounted
    cut: bool = False  # the response passed max_response_tokens: its last turn is cut and scores 0


class Engine:
    """Runs samples through a backend under one protocol configuration."""

    def __init__(
        self,
        backend: Backend,
        config: ProtocolConfig | None = None,
        max_image_pixels: int | None = None,
        pipelined: bool | None = None,
        lookahead: int | None = None,
    ):
        self.backend = backend
        self.config = families.settle(config or ProtocolConfig.paper())  # the family's frame and convention
        self.max_image_pixels = max_image_pixels or imaging.DEFAULT_MAX_IMAGE_PIXELS
        # None: pipelined whenever the backend can take one request at a time (generate_one); False forces turns
        self.pipelined = pipelined
        self.lookahead = lookahead  # samples decoded ahead of the requests; None: one per loader thread
        imaging.preload()  # transformers' import (seconds) here, not in front of the first sample's request

    @property
    def pipelines(self) -> bool:
        """Whether run() pipelines per sample (the backend takes single requests concurrently) or goes by turns."""
        can = callable(getattr(self.backend, "generate_one", None))
        return can if self.pipelined is None else (self.pipelined and can)

    def run(
        self,
        samples: Sequence[Sample],
        on_done: Callable[[int, Trajectory], None] | None = None,
        batch_size: int | None = None,
    ) -> list[Trajectory]:
        """Run every sample to completion; ``on_done(i, trajectory)`` fires as each one finishes (in the caller's
        thread). ``samples`` is only indexed, one sample when the engine reaches it, so a lazy sequence streams.

        Pipelined backends (see ``pipelines``) keep ``concurrency`` requests in flight across all samples;
        ``batch_size`` does not apply to them. Others run in chunks of ``batch_size`` (default: the backend's
        ``batch_size`` where it has one, else DEFAULT_BATCH_SIZE), one backend call per turn per chunk. The
        scheduling is here and nowhere else (not in the callers, not in the backends) because the engine is what
        holds the decoded images: only the samples in flight, and a bounded lookahead, are in memory at a time,
        whatever the number of samples a caller hands over."""
        if self.pipelines:
            return self._run_pipelined(samples, on_done)
        size = max(1, int(batch_size or getattr(self.backend, "batch_size", None) or DEFAULT_BATCH_SIZE))
        out: list[Trajectory] = []
        for start in range(0, len(samples), size):
            chunk = [samples[i] for i in range(start, min(start + size, len(samples)))]
            out.extend(self._run_chunk(chunk, start, on_done))
        return out

    def run_one(self, sample: Sample) -> Trajectory:
        """Run one sample; its trajectory."""
        return self.run([sample])[0]

    # -----------------------------------------------------------------------------------------------------------

    def _run_chunk(
        self, samples: Sequence[Sample], offset: int, on_done: Callable[[int, Trajectory], None] | None
    ) -> list[Trajectory]:
        flights = self._start_all(samples, offset)
        finished: set[int] = set()

        def finish(f: InFlight) -> None:
            if f.index not in finished:
                finished.add(f.index)
                self._finish(f, on_done)

        for f in flights:
            if f.done:
                finish(f)
        for turn in range(self.config.max_turns):
            live = [f for f in flights if not f.done]
            if not live:
                break
            generations = self._generate(live, turn)
            for f, gen in zip(live, generations, strict=True):
                self._take_turn(f, turn, gen)
                if f.done:
                    finish(f)
        for f in flights:
            f.done = True
            finish(f)
        return [f.trajectory for f in flights]

    def _run_pipelined(
        self, samples: Sequence[Sample], on_done: Callable[[int, Trajectory], None] | None
    ) -> list[Trajectory]:
        """Per-sample scheduling: a sample's next turn is sent as soon as its last one returns.

        The caller's thread schedules and takes every episode step (so on_done, the run log and the episodes need
        no locks); request threads only talk to the backend, loader threads only decode. At most ``concurrency``
        requests are out, and at most ``concurrency + lookahead`` samples hold images: samples between turns go
        first, so a started sample never waits behind a new one and memory stays bounded."""
        n = len(samples)
        width = max(1, int(getattr(self.backend, "concurrency", None) or 1))
        loaders = max(1, min(n, os.cpu_count() or 1, MAX_LOAD_THREADS))
        lookahead = max(1, self.lookahead if self.lookahead is not None else loaders)
        reset = getattr(self.backend, "reset_failures", None)
        if callable(reset):
            reset()  # a server found down in an earlier run may be back
        out: list[Trajectory | None] = [None] * n
        load_pool = ThreadPoolExecutor(loaders, thread_name_prefix="mgpo-load")
        request_pool = ThreadPoolExecutor(width, thread_name_prefix="mgpo-request")
        loading: dict[Future[InFlight], int] = {}
        requests: dict[Future[Generation], InFlight] = {}
        ready: deque[InFlight] = deque()  # loaded samples waiting for a request slot
        next_index, resident = 0, 0  # resident: samples loading or loaded and not finished

        def finish(f: InFlight) -> None:
            nonlocal resident
            f.done = True
            resident -= 1
            out[f.index] = f.trajectory
            self._finish(f, on_done)

        try:
            while True:
                while next_index < n and resident < width + lookahead:
                    loading[load_pool.submit(self._start_lazy, next_index, samples)] = next_index
                    next_index, resident = next_index + 1, resident + 1
                while ready and len(requests) < width:
                    f = ready.popleft()
                    requests[request_pool.submit(self._generate_one, f, len(f.trajectory.turns))] = f
                if not loading and not requests:
                    break
                done, _ = wait([*loading, *requests], return_when=FIRST_COMPLETED)
                for future in done:
                    if future in loading:
                        del loading[future]
                        f = future.result()  # type: ignore[assignment]
                        if f.done:
                            finish(f)
                        else:
                            ready.append(f)
                        continue
                    f = requests.pop(future)  # type: ignore[arg-type]
                    turn = len(f.trajectory.turns)
                    self._take_turn(f, turn, future.result())  # type: ignore[arg-type]
                    if f.done or turn + 1 >= self.config.max_turns:
                        finish(f)
                    else:
                        ready.appendleft(f)  # it holds its images already: its next turn goes before new samples
        finally:  # on an error in on_done (disk full, ...): no new work, and the threads wound down before raising
            load_pool.shutdown(wait=True, cancel_futures=True)
            request_pool.shutdown(wait=True, cancel_futures=True)
        return [t for t in out if t is not None]

    def _start_lazy(self, index: int, samples: Sequence[Sample]) -> InFlight:
        """Fetch the sample (a lazy sequence builds it here, in the loader thread) and load its image."""
        try:
            sample = samples[index]
        except Exception as exc:  # a caller's sequence failing on one item must not stop the others
            flight = InFlight(index, Sample("", "", [], None, f"#{index}"), Trajectory(question="", choices=[]))
            _internal(flight.trajectory, "internal error building the sample", exc)
            flight.done = True
            return flight
        return self._start(index, sample)

    def _take_turn(self, f: InFlight, turn: int, gen: Generation) -> None:
        try:
            self._advance(f, turn, gen)
        except Exception as exc:  # a bug or odd image on one sample must not sink the batch
            _internal(f.trajectory, f"internal error on turn {turn + 1}", exc)
            f.done = True

    def _finish(self, f: InFlight, on_done: Callable[[int, Trajectory], None] | None) -> None:
        self._score(f)
        if f.episode is not None:
            f.episode.release()  # free the pixels as soon as a sample is done
        if on_done:
            on_done(f.index, f.trajectory)

    def _start_all(self, samples: Sequence[Sample], offset: int) -> list[InFlight]:
        """Load and pre-resize a chunk's images; in threads, since Pillow decodes without holding the GIL (4K PNG
        ~0.3 s)."""
        workers = min(len(samples), os.cpu_count() or 1, MAX_LOAD_THREADS)
        indices = range(offset, offset + len(samples))
        if workers <= 1:
            return [self._start(i, s) for i, s in zip(indices, samples, strict=True)]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(self._start, indices, samples))

    def _start(self, index: int, sample: Sample) -> InFlight:
        cfg = self.config
        traj = Trajectory(
            question=sample.question,
            choices=list(sample.choices),
            ground_truth=sample.ground_truth,
            id=sample.id,
            image_path=str(sample.image) if isinstance(sample.image, str | Path) else None,
            gt_box=sample.gt_box,
            system_prompt=None if cfg.single_turn else protocol.SYSTEM_PROMPT,
            protocol=cfg.to_dict(),
            meta=dict(sample.meta),
            model_family=cfg.model_family,
        )
        flight = InFlight(index, sample, traj)
        try:
            original = imaging.load_image(sample.image, self.max_image_pixels, cfg.image_mode, cfg.view_pixels)
            flight.episode = Episode(original, sample.question, list(sample.choices), cfg)
            self._prepare(flight)
        except MgpoError as exc:
            traj.error, traj.error_kind = str(exc), "input"
            flight.done = True
        except Exception as exc:  # not the input's fault: one sample's bug must not sink the chunk either
            _internal(traj, "internal error loading the image", exc)
            flight.done = True
        return flight

    def _prepare(self, f: InFlight) -> None:
        """Let the backend do its per-request work for turn 1 (the openai backend: resize and encode the image) here,
        in the loader thread, so a request thread only sends."""
        prepare = getattr(self.backend, "prepare", None)
        if not callable(prepare):
            return
        with contextlib.suppress(Exception):  # the request meets the same failure and records it as the sample's
            prepare(self._request(f, 0))

    def _request(self, f: InFlight, turn: int) -> Request:
        assert f.episode is not None
        key = f.sample.meta.get("seed_key", f.sample.id)  # per-sample sampling seeds
        return Request(f.episode.messages, f.index, turn, f.sample.id, self._turn_budget(f), key)

    def _generate(self, live: list[InFlight], turn: int) -> list[Generation]:
        requests = [self._request(f, turn) for f in live]
        try:
            generations = self.backend.generate(requests)
            if len(generations) != len(requests):
                raise RuntimeError(f"backend returned {len(generations)} results for {len(requests)} requests")
            return generations
        except Exception as exc:
            return [self._failed(exc) for _ in live]

    def _generate_one(self, f: InFlight, turn: int) -> Generation:
        """One request, in a request thread (pipelined runs); a failure becomes this sample's error."""
        try:
            return self.backend.generate_one(self._request(f, turn))  # type: ignore[attr-defined]
        except Exception as exc:
            return self._failed(exc)

    def _failed(self, exc: Exception) -> Generation:
        if isinstance(exc, MgpoError):
            return Generation("", error=str(exc))
        if is_bug(exc):  # a mistake in code, not a failing model or server: --resume must not retry it
            message = f"internal error in the {self.backend.name} backend ({INTERNAL_HINT}): {one_line(exc)}"
            return Generation("", error=message, error_kind="internal", extra={"traceback": debug_traceback(exc)})
        return Generation("", error=f"{self.backend.name} backend failed: {one_line(exc)}")

    def _turn_budget(self, f: InFlight) -> int | None:
        """The per-turn cap, lowered so a turn never runs far past the total cap: the model's earlier tokens alone
        bound what the response already holds from below, so nothing that could still fit is cut off."""
        cap, total = self.config.max_new_tokens, self.config.max_response_tokens
        if not total or not f.output_tokens:
            return cap
        per_turn = cap or self.backend.default_max_new_tokens()
        return max(1, min(per_turn, total - f.output_tokens))

    def _count(self, f: InFlight, turn: int, gen: Generation) -> None:
        """Track the response's length; mark it cut when it passes the total cap (spec §4)."""
        if turn == 0:
            f.first_prompt_tokens = gen.prompt_tokens
        if gen.output_tokens is None or f.output_tokens is None:
            f.output_tokens = None
            return
        f.output_tokens += gen.output_tokens
        total = self.config.max_response_tokens
        if total and turn >= 1 and gen.prompt_tokens is not None and f.first_prompt_tokens is not None:
            # the response = everything after the first prompt: earlier turns, the later user messages, this turn
            f.cut = gen.prompt_tokens - f.first_prompt_tokens + gen.output_tokens > total

    def _advance(self, f: InFlight, turn: int, gen: Generation) -> None:
        """Record the turn as shown and written, then let the episode take its step."""
        ep = f.episode
        assert ep is not None
        frame = ep.frame
        record = Turn(
            prompt=protocol.message_text(ep.messages[-1]),
            output=gen.text,
            image_size=list(ep.original.size),
            frame_size=list(frame),
            shown_box=list(ep.region),
            visual_tokens=imaging.visual_tokens(frame, self.config.unit),
            output_tokens=gen.output_tokens or 0,
            seconds=round(gen.seconds, 4),
        )
        f.trajectory.turns.append(record)
        if gen.error:
            f.trajectory.error, f.trajectory.error_kind = gen.error, gen.error_kind or "backend"
            if gen.extra.get("traceback"):
                f.trajectory.meta["traceback"] = gen.extra["traceback"]
            f.done = True
            return
        self._count(f, turn, gen)
        step = ep.step(gen.text)
        f.done = ep.done
        if step is not None:
            record.box_model, record.box_original, record.fallback = step.box_model, step.box_original, step.fallback
            record.parse_note = "; ".join(step.notes) or None

    def _score(self, f: InFlight) -> None:
        traj = f.trajectory
        kept = f.episode.kept if f.episode is not None else []
        score = score_response(kept, traj.ground_truth, traj.choices, self.config, cut=f.cut)
        traj.response = f.episode.response if f.episode is not None else ""
        traj.answer, traj.answer_source = score.answer, score.source if kept else None
        traj.correct = score.correct if traj.error is None else (False if traj.ground_truth else None)


def _internal(traj: Trajectory, where: str, exc: BaseException) -> None:
    """Record a bug as an internal error (never retried by --resume), with its traceback under MGPO_DEBUG."""
    traj.error, traj.error_kind = f"{where} ({INTERNAL_HINT}): {one_line(exc)}", "internal"
    tb = debug_traceback(exc)
    if tb:
        traj.meta["traceback"] = tb


def build_engine(
    backend: str = "hf",
    model: str | None = DEFAULT_MODEL,
    protocol: ProtocolConfig | None = None,
    responses: str | Path | list[dict] | None = None,
    max_image_pixels: int | None = None,
    **backend_options: Any,
) -> Engine:
    """A ready Engine: the named backend loaded with the model, under the protocol (paper by default), for the
    model's family (mgpo.families: from --model-family, else the checkpoint's config, else the model's name)."""
    requested = protocol or ProtocolConfig.paper()
    cfg = families.for_model(requested, model)
    be = make_backend(backend, model, protocol=cfg, responses=responses, **backend_options)
    settled = families.for_backend(requested, cfg, be)
    if settled.unit != cfg.unit and hasattr(be, "frame_unit"):  # a server's model showed another family
        be.frame_unit = settled.unit
    return Engine(be, settled, max_image_pixels=max_image_pixels)
