"""Instruction data from a clip's metadata and annotations (no Beam; see docs/instruct.md).

    facts = ClipFacts(...)                                  # pipelines/instruct.py builds these
    gen = InstructionGenerator(TemplateWriter(), GenerationSettings())
    result = gen.generate(facts, "mir", tally=Counter())    # -> UnitResult

or with an LLM:

    chat = OpenAIChatBackend(LLMSettings(model="gpt-4o-mini"), api_key_from_env(settings),
                             cache=RequestCache(LocalCacheStore("~/.cache/llark/llm")))
    gen = InstructionGenerator(LLMWriter(chat, settings), settings)
"""

from annotate.instruct.cache import LocalCacheStore, RequestCache, request_key
from annotate.instruct.facts import ChordSegment, ClipFacts, FactsError, NoteSummary
from annotate.instruct.generate import (
    FAMILIES,
    Conversation,
    GenerationSettings,
    InstructionGenerator,
    LLMWriter,
    UnitResult,
    UnusableReplyError,
)
from annotate.instruct.grounding import GroundingSettings, check_text
from annotate.instruct.llm import (
    ChatBackend,
    ChatReply,
    LLMSettings,
    OpenAIChatBackend,
    api_key_from_env,
)
from annotate.instruct.parse import ReplyParseError, extract_json
from annotate.instruct.prompts import PROMPT_VERSION, ChatMessage, build_messages
from annotate.instruct.render import render_facts
from annotate.instruct.template import TEMPLATE_VERSION, TemplateWriter
from annotate.instruct.validate import Draft, Limits, QAPair

__all__ = [
    "FAMILIES", "PROMPT_VERSION", "TEMPLATE_VERSION", "ChatBackend", "ChatMessage", "ChatReply",
    "ChordSegment", "ClipFacts", "Conversation", "Draft", "FactsError", "GenerationSettings",
    "GroundingSettings", "InstructionGenerator", "LLMSettings", "LLMWriter", "Limits",
    "LocalCacheStore", "NoteSummary", "OpenAIChatBackend", "QAPair", "ReplyParseError",
    "RequestCache", "TemplateWriter", "UnitResult", "UnusableReplyError", "api_key_from_env",
    "build_messages", "check_text", "extract_json", "render_facts", "request_key",
]
