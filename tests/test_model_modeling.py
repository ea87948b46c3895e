"""model/modeling.py + model/masking.py on the tiny config: shapes, masks, checks, overfitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data import Sample, collate
from model.masking import AUDIO, IGNORE_INDEX, PromptError, build_example, build_prompt
from model.modeling import (ModelSpec, PeftMissingError, build_model, build_tokenizer,
                            count_parameters, tiny_tokenizer)

DIM = 12
# Llama-2-chat's template, as shipped in its tokenizer_config.json
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}")

TURNS = [("user", "What is the key?"), ("assistant", "The key is F# minor."),
         ("user", "And the tempo?"), ("assistant", "About 120 BPM.")]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def spec(**kw) -> ModelSpec:
    return ModelSpec(lm="tiny", audio_dim=DIM, tiny_hidden_size=32, tiny_layers=2, tiny_heads=4,
                     tiny_intermediate_size=64, **kw)


def batch_of(tok, n_frames=(5, 3), turns=TURNS, seed=0):
    rng = np.random.default_rng(seed)
    samples = []
    for i, n in enumerate(n_frames):
        ex = build_example(tok, turns, n)
        samples.append(Sample(ex.input_ids, ex.labels,
                              rng.standard_normal((n, DIM)).astype(np.float16), f"c{i}", f"v{i}",
                              "mir", 0, {}))
    return collate(samples, tok.pad_token_id)


def supervised_text(tok, input_ids, labels) -> str:
    return tok.decode([t for t in labels if t != IGNORE_INDEX])


# ---------------------------------------------------------------- masking

def test_only_answers_and_end_of_turn_are_supervised(tok):
    ex = build_example(tok, TURNS, 4, system_prompt="You are a music expert.")
    assert len(ex.input_ids) == len(ex.labels) and ex.n_audio == 4
    assert supervised_text(tok, ex.input_ids, ex.labels) == \
        "The key is F# minor.</s>About 120 BPM.</s>"
    # every supervised position holds its own token; nothing of the prompt leaks in
    for i, lab in zip(ex.input_ids, ex.labels):
        assert lab in (IGNORE_INDEX, i)
    audio_id = tok.convert_tokens_to_ids(AUDIO)
    assert all(lab == IGNORE_INDEX for i, lab in zip(ex.input_ids, ex.labels) if i == audio_id)


def test_masking_with_llama2_chat_template(tok):
    tok2 = tiny_tokenizer()
    tok2.chat_template = LLAMA2_TEMPLATE
    ex = build_example(tok2, TURNS, 3, system_prompt="Be brief.")
    text = tok2.decode(ex.input_ids)
    assert text.startswith("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n<audio_start>")
    assert supervised_text(tok2, ex.input_ids, ex.labels) == \
        " The key is F# minor. </s> About 120 BPM. </s>"
    prompt = tok2.decode(build_prompt(tok2, "What is the key?", 3))
    assert prompt.endswith("What is the key? [/INST]")


def test_bad_conversations_are_refused(tok):
    with pytest.raises(PromptError, match="start with a user turn"):
        build_example(tok, [("assistant", "hi")], 2)
    with pytest.raises(PromptError, match="alternate"):
        build_example(tok, [("user", "a"), ("user", "b")], 2)
    with pytest.raises(PromptError, match="at least one assistant answer"):
        build_example(tok, [("user", "a")], 2)


def test_truncation_keeps_lengths_aligned(tok):
    full = build_example(tok, TURNS, 4)
    cut = build_example(tok, TURNS, 4, max_length=len(full.input_ids) - 10)
    assert cut.truncated and len(cut.input_ids) == len(cut.labels) == len(full.input_ids) - 10
    assert cut.labels == full.labels[: len(cut.labels)]


# ---------------------------------------------------------------- model

def test_logits_shape_and_finite_loss(tok):
    model = build_model(spec(), tok)
    b = batch_of(tok)
    out = model(b.input_ids, b.attention_mask, b.audio, b.audio_lengths, labels=b.labels)
    assert out.logits.shape == (2, b.input_ids.shape[1], len(tok))
    assert torch.isfinite(out.loss_sum)
    assert int(out.n_supervised) == int((b.labels[:, 1:] != IGNORE_INDEX).sum()) > 0


def test_projected_frames_land_on_the_placeholders(tok):
    model = build_model(spec(), tok)
    b = batch_of(tok)
    embeds = model.embed_inputs(b.input_ids, b.audio, b.audio_lengths)     # (B, L, H)
    proj = model.projector(b.audio.float())                                 # (B, T, H)
    audio_id = tok.convert_tokens_to_ids(AUDIO)
    for i, n in enumerate(b.audio_lengths.tolist()):
        pos = (b.input_ids[i] == audio_id).nonzero().flatten()
        assert torch.allclose(embeds[i, pos], proj[i, :n], atol=1e-6)
        other = (b.input_ids[i] != audio_id).nonzero().flatten()
        text = model.lm.get_input_embeddings()(b.input_ids[i, other])
        assert torch.allclose(embeds[i, other], text)


def test_placeholder_frame_mismatch_is_a_loud_value_error(tok):
    model = build_model(spec(), tok)
    b = batch_of(tok, n_frames=(5, 3))
    with pytest.raises(ValueError, match=r"placeholders and frames disagree: \[5, 3\] <audio> "
                                         r"tokens per sample, \[5, 2\] frames"):
        model(b.input_ids, b.attention_mask, b.audio, torch.tensor([5, 2]))
    with pytest.raises(ValueError, match="disagree"):
        model(b.input_ids, b.attention_mask, b.audio[:1], b.audio_lengths[:1])


def test_mlp_projector_and_trainable_choices(tok):
    m = build_model(spec(projector="mlp", projector_hidden_size=16, trainable="projector"), tok)
    assert m.projector.net[0].out_features == 16
    _, trainable = count_parameters(m)
    assert trainable == sum(p.numel() for p in m.projector.parameters())
    assert not any(p.requires_grad for p in m.lm.parameters())


def test_lora_adapters_train_with_the_projector(tok):
    try:
        m = build_model(spec(trainable="lora", lora_r=4, lora_alpha=8,
                             lora_target_modules=("q_proj", "v_proj")), tok)
    except PeftMissingError:
        pytest.skip("peft not installed")
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    assert names and all(n.startswith("projector.") or "lora_" in n for n in names)
    assert any("lora_" in n for n in names)
    b = batch_of(tok)
    out = m(b.input_ids, b.attention_mask, b.audio, b.audio_lengths, labels=b.labels)
    out.loss_sum.backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if p.requires_grad)


def test_overfits_a_fixed_batch(tok):
    torch.manual_seed(0)
    model = build_model(spec(), tok, seed=0)
    b = batch_of(tok)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    losses = []
    for _ in range(40):
        out = model(b.input_ids, b.attention_mask, b.audio, b.audio_lengths, labels=b.labels)
        loss = out.loss_sum / out.n_supervised
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[0] > 4.0                       # ~ln(vocab) at the start
    assert losses[-1] < 0.25 * losses[0], losses[::10]


def test_generate_with_audio(tok):
    model = build_model(spec(), tok).eval()
    rng = np.random.default_rng(1)
    prompts = [build_prompt(tok, "Key?", n) for n in (4, 2)]
    samples = [Sample(p, [IGNORE_INDEX] * len(p), rng.standard_normal((n, DIM)).astype(np.float16),
                      "c", "v", "mir", 0, {}) for p, n in zip(prompts, (4, 2))]
    b = collate(samples, tok.pad_token_id, padding_side="left")
    new = model.generate(b.input_ids, b.attention_mask, b.audio, b.audio_lengths,
                         max_new_tokens=6, suppress_token_ids=[tok.convert_tokens_to_ids(AUDIO)])
    assert new.shape[0] == 2 and 1 <= new.shape[1] <= 6
    assert tok.convert_tokens_to_ids(AUDIO) not in new.tolist()


def test_hf_causal_lm_from_a_local_folder(tmp_path):
    """A saved (random) Llama + tokenizer without a chat template load like any HF model."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>"] + list("abcdefghijklmnopqrstuvwxyz ?.#"))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                     unk_token="<unk>")
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2,
                                      num_key_value_heads=2))
    lm.save_pretrained(tmp_path)
    hf_tok.save_pretrained(tmp_path)
    s = ModelSpec(lm=str(tmp_path), audio_dim=DIM, trainable="projector")
    tok = build_tokenizer(s)
    assert tok.pad_token is not None and tok.chat_template
    model = build_model(s, tok)
    assert model.lm.get_input_embeddings().num_embeddings == len(tok) > len(vocab)
    b = batch_of(tok, turns=[("user", "key?"), ("assistant", "f# minor.")])
    out = model(b.input_ids, b.attention_mask, b.audio, b.audio_lengths, labels=b.labels)
    assert out.logits.shape[-1] == len(tok)
    assert supervised_text(tok, b.input_ids[0], b.labels[0]).replace(" ", "") == "f#minor.</s>"


def test_models_load_from_local_files_only_with_an_error_naming_the_path(tmp_path):
    """Nothing is downloaded unless asked: a hub name that is not cached, a missing folder and a
    folder without weights each fail with a ModelNotFoundError that says what to do."""
    from model.modeling import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match=r"model 'llark-test/not-cached-7b': no folder "
                       r".*not-cached-7b, and not in the Hugging Face cache .*hub_download=true"):
        build_tokenizer(ModelSpec(lm="llark-test/not-cached-7b", audio_dim=DIM))
    missing = tmp_path / "models" / "Llama-2-7b-chat-hf"
    with pytest.raises(ModelNotFoundError, match=f"no folder {missing}"):
        build_tokenizer(ModelSpec(lm=str(missing), audio_dim=DIM))
    tiny_tokenizer().save_pretrained(tmp_path / "tok-only")       # a tokenizer, no weights
    s = ModelSpec(lm=str(tmp_path / "tok-only"), audio_dim=DIM)
    tok = build_tokenizer(s)
    with pytest.raises(ModelNotFoundError, match="exists but does not hold a loadable causal LM"):
        build_model(s, tok)


FSDP_RANK_SCRIPT = r"""
import os, sys
import torch
import torch.distributed as dist
from model.modeling import ModelSpec, build_model, build_tokenizer
dist.init_process_group("gloo", rank=0, world_size=1)
spec = ModelSpec(lm=sys.argv[1], audio_dim=12, trainable="projector+lm")
tok = build_tokenizer(spec)
model = build_model(spec, tok)
emb = model.lm.get_input_embeddings().weight
assert not any(b.is_meta for b in model.buffers())     # rotary tables etc. have values
print(emb.is_meta, emb.shape[0] == len(tok), any(p.is_meta for p in model.projector.parameters()))
"""


@pytest.mark.slow
@pytest.mark.parametrize("local_rank,expected", [("1", "True True False"),
                                                 ("0", "False True False")])
def test_fsdp_cpu_ram_efficient_loading_builds_the_lm_on_meta_off_local_rank_0(
        tmp_path, local_rank, expected):
    """What the shipped FSDP configs ask for (fsdp_cpu_ram_efficient_loading): under accelerate's
    FSDP environment a local rank other than 0 gets the LM without values (meta device, nothing
    read into host memory), its token embeddings still grow to the tokenizer, the projector is
    real; local rank 0 loads the weights. (transformers 5 loads the weights on every rank by
    itself: the trainer builds the LM without values there.)"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=200, hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=2)).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "ACCELERATE_USE_FSDP": "true",
           "FSDP_CPU_RAM_EFFICIENT_LOADING": "true", "LOCAL_RANK": local_rank,
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(29650 + int(local_rank))}
    done = subprocess.run([sys.executable, "-c", FSDP_RANK_SCRIPT, str(tmp_path)], env=env,
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == expected
