"""The `diffusers` generator plug-in family (SD 1.5/2.1, SDXL, SD3, FLUX, PixArt-alpha/sigma, Sana).

    generator.py   the plug-in: parameters, generate(), step control
    loading.py     finding the pipeline folder (local or HF cache), checking its class, loading it
    families.py    per pipeline class: prompt encoding, initial latents, the denoiser call with its
                   guidance, decoding, as that class's __call__ does them
    schedulers.py  the supported schedulers: noise level, x0 prediction, stochastic or not
    sampler.py     the one loop shared by generate() and step control: per-row latents, scheduler
                   state and random stream, batched denoiser calls

Nothing here imports torch or diffusers at module level: the registry lists the plug-in without them.
"""
