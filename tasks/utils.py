"""lmms-eval glue for the mgpo_* tasks: re-exports of mgpo library functions (no second copy of any logic)."""

from mgpo.eval.tasks import (  # noqa: F401
    aggregate_accuracy,
    aggregate_macro,
    doc_to_target,
    doc_to_text,
    doc_to_visual,
    process_hrbench4k,
    process_hrbench8k,
    process_mmerw,
    process_mmerw_cn,
    process_mmerw_lite,
    process_results,
    process_vstar,
    process_vstar_attr,
    process_vstar_pos,
)
