"""Chapter 14's Hugging Face checks that are too slow or too folder-bound for the chapter.

The chapter tests tiny DeepSeek-V3 models (width 64, 20 tokens). Here: a larger V3-shaped model (16 experts in
8 groups, query compression, YaRN past its original context) over a longer sequence, sharded and bf16
`save_pretrained` folders (whose experts are stored one by one, as DeepSeek's checkpoints are), a folder
without weights, greedy generation with the latent cache past the original context, and chapter 8's
`Trainer` on a loaded model. Every model is built from a config made here; nothing is downloaded.
"""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from transformer_lit.deepseek import DeepSeek, deepseek_from_hf
from transformer_lit.gpt import generate, perturb_
from transformer_lit.training import TrainConfig, Trainer

from hf_compare import ragged_batch_error

torch.set_num_threads(1)
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "mscale": 0.707,
        "mscale_all_dim": 0.707, "beta_fast": 32, "beta_slow": 1, "rope_theta": 10000.0}


def hf_model(dtype=torch.float32, seed=0, **kw):
    "A random DeepseekV3ForCausalLM: 4 layers of width 128 (1 dense, 3 MoE of 16 experts in 8 groups), non-zero routing bias."
    base = dict(vocab_size=256, hidden_size=128, intermediate_size=256, moe_intermediate_size=48, num_hidden_layers=4,
                num_attention_heads=8, num_key_value_heads=8, n_shared_experts=1, n_routed_experts=16,
                routed_scaling_factor=2.5, kv_lora_rank=32, q_lora_rank=48, qk_rope_head_dim=16, v_head_dim=16,
                qk_nope_head_dim=24, n_group=8, topk_group=4, num_experts_per_tok=4, first_k_dense_replace=1,
                max_position_embeddings=256, rope_parameters=YARN, bos_token_id=None, eos_token_id=None,
                pad_token_id=None, attn_implementation="eager")
    torch.manual_seed(seed)
    model = transformers.DeepseekV3ForCausalLM(transformers.DeepseekV3Config(**{**base, **kw})).eval()
    with torch.no_grad():
        perturb_(model, 0.05, seed)
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.uniform_(-0.3, 0.3)
    return model.to(dtype)


def test_larger_model_long_sequence_yarn():
    theirs = hf_model()
    ours = deepseek_from_hf(theirs)
    x = torch.randint(256, (2, 200), generator=torch.Generator().manual_seed(1))      # past the original 64
    with torch.no_grad():
        assert (ours(x)[0] - theirs(x).logits).abs().max() < 1e-5


def test_generate_past_original_context_equals_transformers():
    theirs = hf_model(q_lora_rank=None, seed=2)
    ours = deepseek_from_hf(theirs)
    x = torch.randint(256, (1, 60), generator=torch.Generator().manual_seed(2))
    ref = theirs.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=30, min_new_tokens=30, do_sample=False)
    assert torch.equal(generate(ours, x, 30, temperature=0), ref)


def test_left_padded_batch_equals_transformers():
    "A ragged batch (left padding, our positions and mask) against transformers' attention_mask and position_ids."
    theirs = hf_model(seed=3)
    ours = deepseek_from_hf(theirs)
    err = ragged_batch_error(ours, theirs, 256, seed=3)
    assert err < 1e-5, err


def test_sharded_folder(tmp_path):
    theirs = hf_model(seed=3)
    theirs.save_pretrained(tmp_path, max_shard_size="200KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    ours = deepseek_from_hf(tmp_path)
    x = torch.randint(256, (1, 40))
    with torch.no_grad():
        assert (ours(x)[0] - theirs(x).logits).abs().max() < 1e-5
        assert (ours.blocks[2].ff.gate.e_score_correction_bias == theirs.model.layers[2].mlp.gate.e_score_correction_bias).all()


def test_bf16_folder(tmp_path):
    theirs = hf_model(torch.bfloat16, seed=4)
    theirs.save_pretrained(tmp_path)
    ours = deepseek_from_hf(tmp_path)
    assert ours.lm_head.weight.dtype == torch.bfloat16
    x = torch.randint(256, (1, 24))
    with torch.no_grad():
        a, b = ours(x)[0].float(), theirs(x).logits.float()
    assert (a - b).abs().max() < 0.1 * b.abs().max()


def test_folder_without_weights(tmp_path):
    hf_model(seed=5).config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        deepseek_from_hf(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        deepseek_from_hf(tmp_path / "missing")


def test_loaded_model_trains():
    ours = deepseek_from_hf(hf_model(seed=6)).train()
    assert isinstance(ours, DeepSeek)
    ids = torch.randint(256, (2000,), generator=torch.Generator().manual_seed(6))
    run = Trainer(ours, ids, ids, TrainConfig(block_size=32, batch_size=4, max_steps=10, warmup_steps=2, eval_interval=0,
                                              device="cpu", progress=False)).fit()
    assert run["loss"][-1] < run["loss"][0]
