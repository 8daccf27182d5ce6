"""``python -m rails.crypto.contracts``: recompile ``multisend.vy`` and rewrite ``multisend.json``."""

from rails.crypto.contracts.multisend import ARTIFACT, write_artifact

write_artifact()
print(f"wrote {ARTIFACT}")
