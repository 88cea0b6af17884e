"""lmms-eval registration of the ``mgpo`` model (entry point group ``lmms_eval.models``).

lmms-eval loads this module while ``lmms_eval.models`` is still initialising, so it imports only the registry
dataclass; the model class itself (mgpo.eval.lmms_model.MgpoModel) is imported when lmms-eval resolves ``--model mgpo``.
"""

from __future__ import annotations

from typing import Any

from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(model_id="mgpo", chat_class_path="mgpo.eval.lmms_model.MgpoModel")


def __getattr__(name: str) -> Any:
    if name == "MgpoModel":  # convenience: `from mgpo.eval.registration import MgpoModel`
        from mgpo.eval.lmms_model import MgpoModel

        return MgpoModel
    raise AttributeError(name)
