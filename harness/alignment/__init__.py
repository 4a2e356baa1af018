"""Preference alignment of image-token generators: DPO, the paper's "reinforce" (sections 2.3-2.4).

    dpo.py      the DPO loss and the log-likelihoods it compares (Show-o's masked-token one, Janus's
                next-token one), as the official Image-Generation-CoT train_dpo.py defines them
    pairs.py    the preference-pairs file (`stepwise curate`'s dpo.jsonl) and its images
    models.py   each generator's side: reference, trainable policy, tokens, checkpoint layout
    train.py    the trainer (`stepwise align dpo`): resumable, checkpoints the generator loads
    guidance.py reward-model guidance: online DPO pairs from policy samples judged by a verifier
    iterate.py  the iterative loop (`stepwise align iterate`): run, curate, train, again

Nothing here imports torch at package import; the modules that need it import it themselves.
"""
