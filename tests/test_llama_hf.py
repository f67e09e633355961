"""Chapter 12's Hugging Face checks that are too slow or too folder-bound for the chapter.

The chapter tests tiny models (width 64, 60 tokens). Here: a larger Llama-shaped model over a longer
sequence with each RoPE scaling past its original context, bf16 folders, a folder without weights,
and chapter 9's checkpoints of a `Llama`. Every model is built from a config made here; nothing is
downloaded.
"""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

transformers = pytest.importorskip("transformers")

from transformer_lit.gpt import generate, perturb_
from transformer_lit.llama import (HF_ARCHITECTURES, Llama, LlamaConfig, llama_from_hf, llama_hf_state_dict,
                                   llama_to_hf)
from transformer_lit.checkpoint import Checkpoints, load_checkpoint
from transformer_lit.training import TrainConfig, Trainer

from hf_compare import ragged_batch_error

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

ROPES = {
    "default": {"rope_type": "default"},
    "linear": {"rope_type": "linear", "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "factor": 4.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
    "llama3": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64},
}


def hf_model(family: str, rope: dict, dtype=torch.float32, **kw):
    "A random transformers model of `family`, 4 layers of width 256, GQA 8/2, original context 64, perturbed."
    base = dict(vocab_size=512, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, bos_token_id=None,
                eos_token_id=None, pad_token_id=None, rope_parameters={**rope, "rope_theta": 10000.0}) | kw
    torch.manual_seed(0)
    model = getattr(transformers, HF_ARCHITECTURES[family])(transformers.AutoConfig.for_model(family, **base))
    return perturb_(model, 0.05).to(dtype).eval()


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("rope", list(ROPES))
def test_logits_and_greedy_past_the_original_context(family, rope):
    theirs = hf_model(family, ROPES[rope])
    ours = llama_from_hf(theirs, block_size=256)
    idx = torch.randint(512, (2, 256), generator=torch.Generator().manual_seed(1))      # 4x the original context
    with torch.no_grad():
        err = (ours(idx)[0] - theirs(idx).logits).abs().max().item()
    assert err < 1e-4, err
    prompt = idx[:1, :48]                                                              # crosses 64 while decoding
    mine = generate(ours, prompt, 48, temperature=0)
    ref = theirs.generate(prompt, max_new_tokens=48, min_new_tokens=48, do_sample=False)
    assert torch.equal(mine, ref)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
@pytest.mark.parametrize("rope", ["default", "yarn"])
def test_left_padded_batch_equals_transformers(family, rope):
    "A ragged batch (left padding, our positions and mask) against transformers' attention_mask and position_ids."
    theirs = hf_model(family, ROPES[rope])
    ours = llama_from_hf(theirs, block_size=256)
    err = ragged_batch_error(ours, theirs, 512, seed=2)
    assert err < 1e-4, err


def test_bf16_folder_round_trip(tmp_path):
    theirs = hf_model("qwen3", ROPES["yarn"], dtype=torch.bfloat16, head_dim=48, tie_word_embeddings=True,
                      max_position_embeddings=256)                              # yarn: 64 -> 256
    theirs.save_pretrained(tmp_path / "hf")
    ours = llama_from_hf(tmp_path / "hf")
    assert ours.lm_head.weight.dtype == torch.bfloat16 and ours.config.head_dim == 48 and ours.config.qk_norm
    assert ours.config.block_size == 256 and ours.config.rope_scaling["original_max_position_embeddings"] == 64
    saved = theirs.state_dict()
    for k, v in llama_hf_state_dict(ours).items():
        assert torch.equal(v, saved[k]), k
    idx = torch.randint(512, (1, 100))
    with torch.no_grad():
        a, b = ours(idx)[0].float(), theirs(idx).logits.float()
    assert (a - b).abs().max().item() < 0.05 * b.abs().max().item()
    llama_to_hf(ours).save_pretrained(tmp_path / "back", max_shard_size="200KB")
    assert (tmp_path / "back" / "model.safetensors.index.json").is_file()
    again = llama_from_hf(tmp_path / "back")
    assert json.loads((tmp_path / "back" / "config.json").read_text())["model_type"] == "qwen3"
    with torch.no_grad():
        assert torch.equal(again(idx)[0], ours(idx)[0])


def test_folder_without_weights(tmp_path):
    hf_model("llama", ROPES["default"]).config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        llama_from_hf(tmp_path)


def test_trainer_checkpoint_of_a_llama(tmp_path):
    config = LlamaConfig(vocab_size=40, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                         rope_scaling={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 16})
    ids = torch.randint(40, (2000,), generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(block_size=32, batch_size=4, max_steps=4, warmup_steps=1, eval_interval=2, eval_batches=2,
                      device="cpu", progress=False)
    torch.manual_seed(0)
    model = Llama(config)
    Trainer(model, ids, ids, cfg, checkpoints=Checkpoints(tmp_path)).fit()
    info = load_checkpoint(tmp_path)
    assert info["model_config"] == asdict(config)
    again = Llama(LlamaConfig.from_dict(info["model_config"]))
    load_checkpoint(info["path"], again)
    x = ids[:32][None]
    with torch.no_grad():
        assert torch.equal(again.eval()(x)[0], model.eval()(x)[0])
