"""Training on the one model definition: MLM pretraining (`mlm`), fine-tuning with a
head, full or IA3 (`finetune`, `ia3`, `heads`), and probing frozen embeddings (`probe`).
Every checkpoint written here is a plain ntengine checkpoint that `ntengine.compile` runs.
"""
