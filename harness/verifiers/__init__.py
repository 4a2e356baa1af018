"""Built-in verifier plug-ins (reward models): `orm`, `prm`, `parm` on one VLM yes/no engine
(`vlm`, `engine`), `clipscore`, and the reference points `oracle` and `random`.

Each module imports torch/transformers lazily, inside the plug-in, so the registry can list
them without loading anything heavy.
"""
