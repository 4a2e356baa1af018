"""Built-in generator plug-ins: `showo` (Show-o, the paper's baseline), `janus` (Janus-Pro via
transformers), `diffusers` (diffusion and flow pipelines via diffusers, in `diffusion/`) and
`folder` (images made elsewhere, in GenEval's layout).

Each lives in its own module and imports torch/transformers lazily, inside the plug-in, so the
registry can list them without loading anything heavy.
"""
