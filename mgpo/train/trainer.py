"""MGPOTrainer: TRL's GRPOTrainer with the MGPO two-turn rollout (and the single-turn GRPO baseline).

Only generation is replaced (``_generate``), as shared/research/trl-grpo.md §9 recommends: turn 1 is sampled with
TRL's own ``_generate_single_turn`` (transformers, vLLM colocate or server); the episode (mgpo.episode, the one infer
and eval run) takes the system's step: the crop (or the original on fallback) comes back as the turn-2 user message,
tokenised by the processor; turn 2 is sampled, and the episode's ``response`` goes to the rewards. Everything after
that is stock TRL: rewards, group advantages, ``tool_mask`` masking of policy loss, KL and entropy, and the forward
pass that re-processes every image of the sequence and rebuilds ``mm_token_type_ids`` over prompt + completion, so
the crop's tokens get real 3-D M-RoPE positions.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

import torch
from trl import GRPOTrainer

from mgpo import families, imaging, protocol
from mgpo.episode import Episode
from mgpo.errors import MgpoError
from mgpo.protocol import ProtocolConfig
from mgpo.train import rollout
from mgpo.train.data import open_image


def _images_in_completion() -> None:
    """Never called: its presence in ``self.tools`` routes TRL onto its images-inside-the-completion forward pass."""


class MGPOTrainer(GRPOTrainer):
    """GRPOTrainer whose rollout is the MGPO protocol (``protocol.single_turn`` gives the one-turn GRPO baseline).

    Dataset rows are in mgpo's normalised schema (mgpo.train.data): ``image`` (the original, opened lazily),
    ``question``, ``choices``, ``answer``; the prompt is built here from mgpo.protocol, never stored.
    """

    def __init__(
        self,
        *args: Any,
        protocol_config: ProtocolConfig | None = None,
        turn_max_new_tokens: int | None = None,
        max_image_pixels: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        # the model family's frame and box convention: resolved from the checkpoint (unless already resolved or
        # forced), the frame unit taken from the processor that tokenises the images
        model = args[0] if args else kwargs.get("model")
        name = model if isinstance(model, str) else getattr(getattr(model, "config", None), "_name_or_path", None)
        proto = families.for_model(protocol_config or ProtocolConfig.paper(), name)
        self.protocol = families.settle(families.with_processor(proto, self.processing_class))
        if not self.protocol.single_turn and self.protocol.max_turns != 2:
            raise MgpoError(
                f"training runs the two-turn protocol; max_turns={self.protocol.max_turns} is not supported"
            )
        self.turn_max_new_tokens = turn_max_new_tokens
        self.max_image_pixels = max_image_pixels or imaging.DEFAULT_MAX_IMAGE_PIXELS
        tok = self._tokenizer
        self.end_of_turn_id = tok.convert_tokens_to_ids("<|im_end|>")
        if not isinstance(self.end_of_turn_id, int) or self.end_of_turn_id < 0:
            self.end_of_turn_id = tok.eos_token_id
        self.end_of_turn_text = tok.convert_ids_to_tokens(self.end_of_turn_id)
        self._batch: list[rollout.Rollout] | None = None

    # -----------------------------------------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        episodes: list[rollout.Rollout] = []
        cache: dict[tuple[str, str, str], Episode] = {}
        held: list[Any] = []
        for row in inputs:
            image = row.pop("image", None)  # TRL would insert it a second time; the prompt carries the view
            held.append(image)  # alive until the loop ends, so an object's id() names only it
            key = (str(row.get("id")), row["question"], _image_identity(image))
            if key not in cache:
                try:
                    original = open_image(image, self.max_image_pixels, self.protocol.image_mode)
                except MgpoError as exc:
                    raise MgpoError(f"training row {row.get('id')}: {exc}") from exc
                cache[key] = Episode(original, row["question"], list(row["choices"]), self.protocol)
            ep = rollout.Rollout(cache[key].fork())  # the same images and prompt; its own conversation
            row["prompt"] = ep.episode.messages
            episodes.append(ep)
        self._batch = episodes
        saved_tools = self.tools
        if not self.protocol.single_turn:
            self.tools = [_images_in_completion]
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self.tools = saved_tools
            self._batch = None

    def _generate(self, prompts: list):
        if self.protocol.single_turn:
            return super()._generate(prompts)
        assert self._batch is not None and len(self._batch) == len(prompts)
        episodes = self._batch
        device = self.accelerator.device
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval

        saved_tools, self.tools = self.tools, []  # render turn 1 with no tool boilerplate
        try:
            prompt_ids, images, mm_fields = self._tokenize_prompts(prompts)
        finally:
            self.tools = saved_tools
        with self._turn_cap(self._per_turn_cap()):
            turn1, logprobs1 = self._generate_single_turn(prompt_ids, images, mm_fields, num_generations)

        tokenizer = self._tokenizer
        for i, ep in enumerate(episodes):
            rollout.finish_turn1(
                ep,
                list(turn1[i]),
                logprobs1[i] if logprobs1 is not None else None,
                tokenizer,
                self.eos_token_ids,
                self.end_of_turn_id,
            )
            rollout.build_user2(self.processing_class, ep, self.end_of_turn_text)
            # never cut inside the turn-2 message: a partial image block would make TRL drop every image of the batch
            room = self.max_completion_length - len(ep.turn1_ids) - len(ep.user2_ids)
            ep.turn2_skipped = room <= 0

        live = [i for i, ep in enumerate(episodes) if not ep.turn2_skipped]
        # every process samples turn 2 exactly once per batch, even when none of its rollouts has room left: ZeRO-3
        # parameter gathering and vLLM's cross-process prompt gathering are collective calls (results then unused)
        ask = live or list(range(len(episodes)))
        seqs = [list(prompt_ids[i]) + episodes[i].turn1_ids + episodes[i].user2_ids for i in ask]
        loop_images = [[episodes[i].full_view, episodes[i].view] for i in ask]
        flat = [img for imgs in loop_images for img in imgs]
        fields = dict(self.processing_class.image_processor(images=flat, return_tensors="pt"))
        fields = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in fields.items()}
        longest_room = max(
            self.max_completion_length - len(episodes[i].turn1_ids) - len(episodes[i].user2_ids) for i in ask
        )
        with self._turn_cap(max(1, min(self._per_turn_cap(), longest_room))):
            turn2, logprobs2 = self._generate_single_turn(seqs, loop_images, fields, 1, has_tool_images=True)
        for j, i in enumerate(live):
            ep = episodes[i]
            room = self.max_completion_length - len(ep.turn1_ids) - len(ep.user2_ids)
            lp = logprobs2[j] if logprobs2 is not None else None
            rollout.finish_turn2(ep, turn2[j], lp, room, self.eos_token_ids, self.end_of_turn_id, tokenizer)

        completion_ids, tool_mask, logprobs, completions = [], [], [], []
        for ep in episodes:
            ids, mask, lps = ep.completion()
            completion_ids.append(ids)
            tool_mask.append(mask)
            logprobs.append(lps)
            completions.append(self._messages(ep))
        if logprobs1 is None:
            logprobs_out = None
        else:  # vLLM: NaN marks re-encoded tokens, which TRL leaves out of the importance-sampling correction
            logprobs_out = [[float("nan") if x is None else x for x in lps] for lps in logprobs]
        self._log_rollout(episodes, prompt_ids, mode, device)
        extra_fields = {
            "mgpo_box_valid": [ep.cropped for ep in episodes],
            "mgpo_box_original": [ep.step.box_original if ep.step else None for ep in episodes],
            "mgpo_turn2_cut": [ep.over_total_cap for ep in episodes],  # the accuracy reward gives these 0
            "mgpo_response": [ep.episode.response for ep in episodes],  # the scored text, as infer and eval score it
        }
        images_out = [ep.images for ep in episodes]
        return prompt_ids, completion_ids, tool_mask, completions, logprobs_out, extra_fields, images_out, images_out

    # -----------------------------------------------------------------------------------------------------------

    def _per_turn_cap(self) -> int:
        cap = self.turn_max_new_tokens or self.max_completion_length
        return max(1, min(cap, self.max_completion_length))

    @contextlib.contextmanager
    def _turn_cap(self, cap: int) -> Iterator[None]:
        """Temporarily cap new tokens per generation call, on every generation path TRL has."""
        has_config, has_kwargs = hasattr(self, "generation_config"), hasattr(self, "generation_kwargs")
        saved = (
            self.generation_config.max_new_tokens if has_config else None,
            self.generation_kwargs.get("max_new_tokens") if has_kwargs else None,
        )
        vllm = getattr(self, "vllm_generation", None) if self.use_vllm else None
        saved_vllm = vllm.max_completion_length if vllm is not None else None
        try:
            if hasattr(self, "generation_config"):
                self.generation_config.max_new_tokens = cap
            if hasattr(self, "generation_kwargs"):
                self.generation_kwargs["max_new_tokens"] = cap
            if vllm is not None:
                vllm.max_completion_length = cap
            yield
        finally:
            if hasattr(self, "generation_config"):
                self.generation_config.max_new_tokens = saved[0]
            if hasattr(self, "generation_kwargs"):
                self.generation_kwargs["max_new_tokens"] = saved[1]
            if vllm is not None:
                vllm.max_completion_length = saved_vllm

    def _messages(self, ep: rollout.Rollout) -> list[dict[str, Any]]:
        """The completion as chat messages, for the reward functions and TRL's completion logging: the episode's
        conversation after the prompt, images written as <image>."""
        msgs = ep.episode.messages[2:]  # after the turn-1 prompt [system, user]: turn 1 as kept, the turn-2 message
        if ep.turn2_skipped:
            msgs = msgs[:1]  # turn 1 only: no room was left for the turn-2 message
        out = [{"role": m["role"], "content": protocol.message_text(m)} for m in msgs]
        if not ep.turn2_skipped:
            out.append({"role": "assistant", "content": ep.episode.response})
        return out

    def _log_rollout(self, episodes: list[rollout.Rollout], prompt_ids: list, mode: str, device: Any) -> None:
        """Per-step protocol metrics, gathered over processes: box validity, fallbacks, crop size, turn lengths."""
        rows = []
        for ep in episodes:
            assert ep.step is not None
            area = 0.0
            if ep.step.box_original is not None:
                x1, y1, x2, y2 = ep.step.box_original
                area = (x2 - x1) * (y2 - y1) / (ep.original.width * ep.original.height)
            rows.append(
                [
                    float(ep.cropped),
                    float(ep.step.box_model is not None),
                    area,
                    float(len(ep.turn1_ids)),
                    float(len(ep.user2_ids) if not ep.turn2_skipped else 0),
                    float(len(ep.turn2_ids)),
                    float(ep.turn2_skipped),
                ]
            )
        stats = self.accelerator.gather(torch.tensor(rows, dtype=torch.float32, device=device)).cpu()
        valid = stats[:, 0]
        m = self._metrics[mode]
        m["mgpo/valid_box_ratio"].append(valid.mean().item())
        m["mgpo/fallback_rate"].append(1.0 - valid.mean().item())
        m["mgpo/box_found_ratio"].append(stats[:, 1].mean().item())
        m["mgpo/crop_area_fraction"].append(stats[valid > 0, 2].mean().item() if valid.any() else 0.0)
        m["mgpo/turn1_length"].append(stats[:, 3].mean().item())
        m["mgpo/user2_length"].append(stats[:, 4].mean().item())
        m["mgpo/turn2_length"].append(stats[:, 5].mean().item())
        m["mgpo/turn2_skipped_ratio"].append(stats[:, 6].mean().item())


def _image_identity(image: Any) -> str:
    """What tells one row's image from another's, so generations of one row share a decode and rows never mix.

    Ids and questions repeat across rows (one photo, several questions; several photos, one question), so the
    image itself is part of the key: its path, a digest of its bytes, or the object for a decoded image.
    """
    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (bytes, bytearray)):
        return "sha1:" + hashlib.sha1(image).hexdigest()
    if isinstance(image, str):
        return ("sha1:" + hashlib.sha1(image.encode()).hexdigest()) if len(image) > 1024 else image
    return f"object:{id(image)}"
