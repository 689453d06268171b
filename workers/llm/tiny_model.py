"""Build a tiny random Llama that vLLM can load, with no download.

Run with the vLLM venv's python (it needs torch, tokenizers and transformers), never
imported by the main venv; ``workers.llm.build_tiny_model`` runs it::

    ~/.cache/masa/vllm-venv/bin/python workers/llm/tiny_model.py OUTDIR

The tokenizer is a byte-level BPE (~300 tokens) trained on the text below; the
weights are random from a fixed seed, so the same seed writes the same files.
Hidden size 256 with 4 heads gives head dim 64 (vLLM's CPU attention refuses 16).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SEED = 1234
VOCAB_SIZE = 300
SPECIAL_TOKENS = ["<s>", "</s>", "<pad>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "Workers stake tokens, serve data and language model requests, and earn fees.",
    "Oracle nodes prepay fees and submit requests to the marketplace.",
    "Data contributors earn a share of every fee whose result used their data.",
    "Every fact that moves money is an event in the store.",
    "The settlement job computes a statement and posts a Merkle root on chain.",
    "Heartbeats prove that a worker was available during the epoch.",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "user: hello there, how are you? assistant: fine, thank you.",
]


def train_tokenizer() -> Tokenizer:
    """A byte-level BPE over ``CORPUS`` with ``VOCAB_SIZE`` entries at most."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    return tokenizer


def wrap_tokenizer(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def llama_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        initializer_range=0.1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
    )


def build(outdir: Path, seed: int = SEED) -> Path:
    """Write the tokenizer and a seeded random model to ``outdir``; return it."""
    tokenizer = wrap_tokenizer(train_tokenizer())
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(tokenizer)).eval()
    outdir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(outdir)
    tokenizer.save_pretrained(outdir)
    return outdir


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tiny_model.py OUTDIR")
    print(build(Path(sys.argv[1])))
