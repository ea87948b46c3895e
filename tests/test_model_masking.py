"""model/masking.py: the one-render loss mask equals the prefix-render one it replaced.

``reference_example`` below is the masking as it was before the loader was made cheaper (three
renders per answer, the tokenizer's ``__call__``, a Python walk over the offsets), kept here
verbatim as the definition the fast route must reproduce token for token.
"""

from __future__ import annotations

import numpy as np
import pytest

from model import masking
from model.masking import (IGNORE_INDEX, PromptError, build_example, render,
                           supervised_spans_by_prefixes, to_messages)
from model.modeling import tiny_tokenizer
from tests.test_model_modeling import LLAMA2_TEMPLATE


def reference_example(tok, turns, n_frames, system_prompt="", max_length=0):
    messages = to_messages(turns, n_frames, system_prompt)
    full = render(tok, messages, add_generation_prompt=False)
    spans = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tok, messages[:k], add_generation_prompt=True)
        upto = render(tok, messages[: k + 1], add_generation_prompt=False)
        if not full.startswith(upto) or not upto.startswith(before):
            raise PromptError("not prefix-stable")
        start, end = len(before), len(before) + len(upto[len(before):].rstrip())
        if end <= start:
            raise PromptError(f"assistant turn {k} renders to no text")
        spans.append((start, end))
    if not spans:
        raise PromptError("a conversation needs at least one assistant answer to supervise")
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    span_i = 0
    for t, (start, _end) in enumerate(enc["offset_mapping"]):
        while span_i < len(spans) and start >= spans[span_i][1]:
            span_i += 1
        if span_i == len(spans):
            break
        if spans[span_i][0] <= start < spans[span_i][1]:
            labels[t] = ids[t]
    audio_id = tok.convert_tokens_to_ids("<audio>")
    if max_length and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels, sum(1 for i in ids if i == audio_id)


def _tokenizers():
    default = tiny_tokenizer()
    llama = tiny_tokenizer()
    llama.chat_template = LLAMA2_TEMPLATE
    return {"default": default, "llama2": llama}


TOKENIZERS = _tokenizers()

# (turns, system prompt, verbatim): verbatim = every content is inserted as is by both
# templates (Llama-2's strips contents, so outer whitespace takes the prefix route there)
CONVERSATIONS = [
    ([("user", "What is the key?"), ("assistant", "F# minor.")], "", True),
    ([("user", "What is the key?"), ("assistant", "The key is F# minor."),
      ("user", "And the tempo?"), ("assistant", "About 120 BPM.")], "You are a music expert.", True),
    ([("user", "Describe it."), ("assistant", "A slow, sad piano piece — très doux, 悲しい."),
      ("user", "Instruments?"), ("assistant", "Piano, cello."),
      ("user", "Why is it sad?"), ("assistant", "Minor mode,\nslow tempo\nand low register.")],
     "", True),
    ([("user", "Tokens in text: <|assistant|> </s> [/INST]?"),
      ("assistant", "They stay text: <|user|> <s> [INST] </s>")], "Be brief.", True),
    ([("user", "  padded question  "), ("assistant", "  padded answer \n"),
      ("user", "\tagain"), ("assistant", "yes  ")], "", False),
    ([("user", "a sentinel \ue000 0 \ue001 inside"), ("assistant", "and \ue0010\ue000 here")],
     "", False),
]


@pytest.mark.parametrize("tok_name", sorted(TOKENIZERS))
@pytest.mark.parametrize("case", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("n_frames", [1, 7])
def test_one_render_mask_equals_the_prefix_render_mask(tok_name, case, n_frames):
    tok = TOKENIZERS[tok_name]
    turns, system, _ = CONVERSATIONS[case]
    ex = build_example(tok, turns, n_frames, system)
    ids, labels, n_audio = reference_example(tok, turns, n_frames, system)
    assert ex.input_ids == ids
    assert ex.labels == labels
    assert ex.n_audio == n_audio == n_frames
    assert ex.n_supervised > 0 and not ex.truncated
    messages = to_messages(turns, n_frames, system)
    assert masking.supervised_spans(tok, messages) == supervised_spans_by_prefixes(tok, messages)
    # and under truncation, at several cut points
    for cut in (len(ids) // 3, len(ids) - 3):
        ex = build_example(tok, turns, n_frames, system, max_length=cut)
        r_ids, r_labels, r_audio = reference_example(tok, turns, n_frames, system, cut)
        assert (ex.input_ids, ex.labels, ex.n_audio) == (r_ids, r_labels, r_audio)


@pytest.mark.parametrize("tok_name", sorted(TOKENIZERS))
def test_the_conversation_is_rendered_once_per_sample(tok_name, monkeypatch):
    """The skeleton is rendered once per turn structure; after that one render per sample,
    and the fast route is really taken for contents the template inserts verbatim."""
    tok = TOKENIZERS[tok_name]
    calls = []
    real_render = masking.render

    def counting(tokenizer, messages, add_generation_prompt):
        calls.append(len(messages))
        return real_render(tokenizer, messages, add_generation_prompt)

    monkeypatch.setattr(masking, "render", counting)
    for turns, system, verbatim in CONVERSATIONS:
        if not verbatim:
            continue
        build_example(tok, turns, 3, system)            # builds (and caches) the skeleton
        calls.clear()
        build_example(tok, turns, 5, system)
        assert calls == [len(turns) + bool(system)], (turns, calls)


def test_content_the_template_changes_takes_the_prefix_route(monkeypatch):
    """Llama-2's template strips contents: the one rendering then differs from the skeleton's,
    and the spans come from the prefix renders (same result as the reference, checked above)."""
    tok = TOKENIZERS["llama2"]
    turns = CONVERSATIONS[4][0]
    used = []
    real = masking.supervised_spans_by_prefixes
    monkeypatch.setattr(masking, "supervised_spans_by_prefixes",
                        lambda t, m: used.append(1) or real(t, m))
    build_example(tok, turns, 2)
    assert used == [1]
    used.clear()
    build_example(tok, CONVERSATIONS[0][0], 2)
    assert used == []


def test_errors_are_those_of_the_prefix_route():
    tok = tiny_tokenizer()
    # an answer is its content alone: a blank answer leaves nothing to supervise
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'user' %}<|user|>"
                         "{{ m['content'] }}<|assistant|>{% else %}{{ m['content'] }}{% endif %}"
                         "{% endfor %}")
    build_example(tok, [("user", "q"), ("assistant", "a")], 2)          # the template works
    with pytest.raises(PromptError, match="assistant turn 1 renders to no text"):
        build_example(tok, [("user", "q"), ("assistant", "  \n")], 2)
    for t in TOKENIZERS.values():
        with pytest.raises(PromptError, match="at least one assistant answer"):
            build_example(t, [("user", "q")], 2)


def test_a_template_that_is_not_prefix_stable_is_refused():
    tok = tiny_tokenizer()
    # the last message is rendered differently: earlier turns change as turns are added
    tok.chat_template = ("{% for m in messages %}{% if loop.last %}<|assistant|>LAST:"
                         "{% else %}<|user|>{% endif %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(PromptError, match="prefix by prefix"):
        build_example(tok, [("user", "q"), ("assistant", "a"), ("user", "q2"),
                            ("assistant", "a2")], 2)


def test_label_mask_matches_the_offset_walk_even_out_of_order():
    spans = [(5, 9), (20, 30)]
    for begins in ([0, 4, 5, 8, 9, 19, 20, 29, 30, 31], [0, 6, 6, 21, 2, 25, 40, 7],
                   [10, 5, 22], []):
        offsets = [(b, b + 1) for b in begins]
        walked = masking._label_mask_loop(np.asarray(begins, dtype=np.int64), spans)
        assert masking._label_mask(offsets, spans).tolist() == walked.tolist()
    # the walk itself: sorted offsets supervise exactly the starts inside a span
    assert masking._label_mask([(b, b) for b in (4, 5, 8, 9, 20, 29, 30)], spans).tolist() == \
        [False, True, True, False, True, True, False]
