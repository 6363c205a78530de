"""Interests → ranked papers, with a human reason for each pick ("why this paper").

Pure functions: no database, no I/O. An issue builds one `PaperIndex` (`build_index`), then
`rank_papers` is called once per subscriber, so everything that does not depend on the reader
(tokenising, stemming, term weights, idf, trending scores) is computed once in the index.

Relevance is lexical and explainable:

* text is tokenised, stop words dropped and words reduced by a small Porter-style stemmer;
  adjacent words also form bigram terms ("reinforc learn"), so phrases outrank scattered words;
* papers are weighted BM25F-style: a title match counts three times an abstract match, and term
  frequency saturates, so one long abstract cannot win on repetition alone;
* the reader's words are expanded with a small lexicon of research-topic synonyms ("llm" ↔
  "large language model") and related terms ("robot" → "manipulation"), at lower weight;
* a paper that covers more of the reader's words ("LLM agents and tool use") beats one that
  repeats a single word many times;
* "more / less like this" votes build a Rocchio profile (`update_profile`) that is mixed in:
  liked words also match their lexicon expansions, a dislike pushes away from the disliked
  paper's distinctive words only, and vague stated interests ("learning") yield to what the
  reader's votes say (see the PROFILE_* tunables).

Relevance is then blended with `trending_score`, and a reader whose interests match nothing gets
the trending order. Every `RankedItem` says why it was chosen.
"""

from __future__ import annotations

import heapq
import html
import itertools
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from newsletter.values import as_utc, shorten

# --- tunables (see benchmarks/ranking_eval.py for their effect) -------------------------------

TRENDING_HALF_LIFE_DAYS = 3.0  # a paper's trending score halves every 3 days
TRENDING_UPVOTES_HALF = 30  # 30 upvotes give half of the maximum popularity
TRENDING_UNKNOWN_AGE = 0.5  # decay factor used when the publication date is unknown
TRENDING_WEIGHT = 0.15  # share of trending in the final score; relevance gets the rest

FIELD_WEIGHTS = {"title": 3.0, "keywords": 2.0, "abstract": 1.0}
FIELD_LENGTH_NORM = {"title": 0.3, "keywords": 0.3, "abstract": 0.75}  # BM25 "b" per field
BM25_K1 = 1.2
BIGRAM_WEIGHT = 1.0  # query weight of a bigram relative to a single word
SYNONYM_WEIGHT = 0.9  # an expansion that means the same thing ("rl" → "reinforcement learning")
RELATED_WEIGHT = 0.35  # an expansion that is merely close ("robot" → "manipulation")
COVERAGE_WEIGHT = 0.5  # a paper covering none of the reader's words loses half its score

# Learning from votes (issue #7). Feedback simulation in benchmarks/ranking_eval.py, P@5 of the
# next issue after 0/1/3/5/10/20 votes (vague readers, odd/even split; no votes 0.208, best
# possible 0.658): 0.208 0.212 0.221 0.246 0.279 0.346 before, 0.208 0.237 0.254 0.271 0.358
# 0.413 now (mean of 20 random splits: 0.363 → 0.423 after 20 votes). Readers without votes
# rank exactly as before (labelled P@5 0.733, P@10 0.442). `ranking_eval.py --ablation` shows
# each tunable's share; the lexicon expansion and 100 terms per vote matter most.
PROFILE_MAX_TERMS = 200
PROFILE_MAX_WEIGHT = 100.0  # votes keep |weight| under 1 / (1 - PROFILE_DECAY) = 20
PROFILE_MAX_TITLES = 5
PROFILE_TERMS_PER_VOTE = 100  # a vote moves the profile along the paper's 100 strongest terms
PROFILE_LIKED_SHARE = 2 / 3  # liked terms may keep 2/3 of the slots: dislikes can't evict them
PROFILE_LIKE = 1.0  # Rocchio beta: weight of a "more like this" paper
PROFILE_DISLIKE = 0.5  # Rocchio gamma: weight of a "less like this" paper
PROFILE_DISLIKE_IDF = 1.0  # a dislike moves a term by (idf / idf of a one-paper word) ** this:
# the disliked paper's distinctive words, hardly the generic ones most papers share (0 = all)
PROFILE_DISLIKED_WEIGHT = 0.25  # resembling disliked papers costs 1/4 of what resembling liked
# ones earns; each side is normalised on its own, so many dislikes cannot drown one like
PROFILE_EXPANSION = 1.0  # liked words bring in their lexicon synonyms / related terms (0 = off)
PROFILE_DECAY = 0.95  # older votes fade a little with each new one
PROFILE_FULL_VOTES = 3  # after 3 votes the profile counts as much as specific stated interests
STATED_FULL_SPECIFICITY = 1.0  # stated interests hold their own against liked papers only if
# their words are specific: summed idf / idf of a one-paper word ("learning" ≈ 0.02, "robots"
# ≈ 0.3, "offline RL" ≈ 0.9); vaguer ones yield to the profile (0 = always hold their own)

MATCH_SHOWN_SHARE = 0.15  # a matched word is named only if it counts for 15% of the best one
MIN_RELEVANCE = 0.05  # below this a paper is shown for trending, not for the reader's interests
MAX_INTEREST_CHARS = 2_000  # a subscriber's free text beyond this is ignored
MAX_FIELD_CHARS = 20_000
TRENDING_WHY = "Trending this week"


# --- public data types ------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperText:
    """What ranking needs to know about a paper."""

    id: int
    title: str
    abstract: str = ""
    keywords: tuple[str, ...] = ()
    upvotes: int = 0
    published_at: datetime | None = None


@dataclass
class RankedItem:
    paper_id: int
    score: float  # what the list is sorted by: relevance blended with trending
    relevance: float  # -1..1; negative when the paper resembles ones the reader disliked
    trending: float  # 0..1, see trending_score
    why: str  # one short line for the email
    matched_terms: tuple[str, ...]  # the reader's words (or their synonyms) found in the paper


@dataclass(frozen=True)
class PaperIndex:
    """Everything about one issue's papers that does not depend on the reader."""

    papers: tuple[PaperText, ...]
    trending: tuple[float, ...]
    postings: Mapping[str, tuple[tuple[int, float, float], ...]]  # term → (doc, bm25, unit)
    doc_terms: tuple[Mapping[str, float], ...]  # per paper: term → BM25 weight
    top_terms: tuple[tuple[tuple[str, float], ...], ...]  # per paper: strongest (term, unit)
    idf: Mapping[str, float]
    labels: Mapping[str, str]  # term → the words it most often came from ("continual learning")
    positions: Mapping[int, int]  # paper id → position in `papers`
    # term → (doc, weight) of the lexicon expansions of the term found in each paper: what a liked
    # word brings in ("llm" → papers saying "large language model"); see PROFILE_EXPANSION
    expansions: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)


# --- trending --------------------------------------------------------------------------------


def trending_score(upvotes: int, published_at: datetime | None, now: datetime) -> float:
    """Popularity decayed by age, in [0, 1).

    ``popularity = u / (u + 30)`` for ``u = max(upvotes, 0)``: diminishing returns, so 30
    upvotes give 0.5, 90 give 0.75 and 300 give 0.91.
    ``decay = 0.5 ** (age_days / 3)``: the score halves every three days; a date in the future
    counts as age 0, an unknown date as one half-life (0.5).
    Naive datetimes are taken to be UTC.
    """
    u = max(int(upvotes or 0), 0)
    popularity = u / (u + TRENDING_UPVOTES_HALF)
    if published_at is None:
        return popularity * TRENDING_UNKNOWN_AGE
    age_days = max((as_utc(now) - as_utc(published_at)).total_seconds() / 86_400, 0.0)
    return popularity * 0.5 ** (age_days / TRENDING_HALF_LIFE_DAYS)


# --- stemming ----------------------------------------------------------------------------------
# Porter (1980), steps 1-5, with the most aggressive step-4 endings left out: stripping -al and
# -er would merge "general" with "generation" and "transformer" with "transform".

# fmt: off
_STEP2 = (
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"), ("izer", "ize"),
    ("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous"),
    ("ization", "ize"), ("isation", "ize"), ("ation", "ate"), ("ator", "ate"), ("alism", "al"),
    ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"),
    ("iviti", "ive"), ("biliti", "ble"), ("logi", "log"),
)
_STEP3 = (
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"),
    ("ful", ""), ("ness", ""),
)
_STEP4 = (
    "ance", "ence", "able", "ible", "ement", "ment", "ent", "ant", "ism", "ate", "iti", "ous",
    "ive", "ize", "ic",
)
# Words the rules would merge with an unrelated family.
_STEM_EXCEPTIONS = {
    "generic": "generic", "experiment": "experiment", "experiments": "experiment",
    "experimental": "experiment", "news": "news", "series": "series", "species": "species",
    "children": "child", "curricula": "curriculum", "indices": "index",
}
# fmt: on


def _is_consonant(word: str, i: int) -> bool:
    ch = word[i]
    if ch in "aeiou":
        return False
    if ch == "y":
        return i == 0 or not _is_consonant(word, i - 1)
    return True


def _measure(stem: str) -> int:
    """Porter's m: the number of vowel→consonant transitions."""
    m, prev_vowel = 0, False
    for i in range(len(stem)):
        vowel = not _is_consonant(stem, i)
        if prev_vowel and not vowel:
            m += 1
        prev_vowel = vowel
    return m


def _has_vowel(stem: str) -> bool:
    return any(not _is_consonant(stem, i) for i in range(len(stem)))


def _ends_cvc(word: str) -> bool:
    """Consonant-vowel-consonant, the last not w, x or y (hop, not hoop or snow)."""
    n = len(word)
    return (
        n >= 3
        and _is_consonant(word, n - 3)
        and not _is_consonant(word, n - 2)
        and _is_consonant(word, n - 1)
        and word[-1] not in "wxy"
    )


def _step1(word: str) -> str:
    """Plurals, -ed and -ing, and a final y."""
    if word.endswith(("sses", "ies")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    if word.endswith("eed"):
        if _measure(word[:-3]) > 0:
            word = word[:-1]
    elif word.endswith(("ed", "ing")):
        base = word[:-2] if word.endswith("ed") else word[:-3]
        if _has_vowel(base):
            word = _restore_ending(base)
    if word.endswith("y") and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    return word


def _restore_ending(base: str) -> str:
    """After -ed / -ing: conflat(ed) → conflate, hopp(ing) → hop, hop(ed) → hope."""
    if base.endswith(("at", "bl", "iz")):
        return base + "e"
    if len(base) > 1 and base[-1] == base[-2] and base[-1] not in "lsz":
        return base[:-1]
    if _measure(base) == 1 and _ends_cvc(base):
        return base + "e"
    return base


def _replace_suffix(word: str, rules: Iterable[tuple[str, str]], min_measure: int) -> str:
    for suffix, replacement in rules:
        if word.endswith(suffix):
            stem = word[: -len(suffix)]
            return stem + replacement if _measure(stem) > min_measure else word
    return word


def _step4(word: str) -> str:
    for suffix in _STEP4:
        if word.endswith(suffix):
            stem = word[: -len(suffix)]
            return stem if _measure(stem) > 1 else word
    if word.endswith("ion") and word[-4:-3] in ("s", "t") and _measure(word[:-3]) > 1:
        return word[:-3]
    return word


def _step5(word: str) -> str:
    if word.endswith("e"):
        m = _measure(word[:-1])
        if m > 1 or (m == 1 and not _ends_cvc(word[:-1])):
            word = word[:-1]
    if word.endswith("ll") and _measure(word) > 1:
        word = word[:-1]
    return word


@lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """Reduce an English word to its stem: learning → learn, robotics → robot."""
    word = word.lower()
    if word in _STEM_EXCEPTIONS:
        return _STEM_EXCEPTIONS[word]
    if len(word) <= 3 or not word.isascii() or not word.isalpha():
        return word
    word = _step1(word)
    word = _replace_suffix(word, _STEP2, 0)
    word = _replace_suffix(word, _STEP3, 0)
    return _step5(_step4(word))


# --- tokenising --------------------------------------------------------------------------------

_STOPWORDS = """
    a about above after again against all almost along already also although always am among an
    and another any anyone anything are around as at be became because been before being below
    between both but by can cannot could did do does doing done down during each either else
    especially etc even ever every few for from further had has have having he her here hers
    him his how however i if in into is it its itself just least less let like likes liked many
    may me might more most mostly much must my neither no nor not now of off often on once one
    only or other others our ours out over own per perhaps please quite rather really same she
    should since so some something such than that the their theirs them then there these they
    this those though through thus to too toward towards under until up upon us very via was we
    well were what when where whether which while who whom whose why will with within without
    would yet you your yours
    interested interest interests love enjoy want wanted looking mainly particularly paper papers
    article articles stuff thing things topic topics related latest recent new kind kinds e g eg
    ie vs versus lot lots
    propose proposed proposes present presents introduce introduces introduced novel show shows
    shown demonstrate demonstrates result results approach approaches method methods work works
    study studies use uses used using based achieve achieves first several various different
"""
STOPWORDS = frozenset(_STOPWORDS.split())

_TAGS = re.compile(r"<[^>]{0,500}>")
_PHRASE_BREAK = re.compile(r"[.,;:!?()\[\]{}<>\"|/\\–—]+|\s-\s|['’]s\b")
_WORD = re.compile(r"[^\W_]+(?:_[^\W_]+)*")  # "_" only joins compounds (see below)
# "pre-trained", "pre trained" and "pretrained" are one word (pre_trained), and so on.
_COMPOUND = re.compile(
    r"\b(pre|fine|multi|semi|self|non)[-\s]?"
    r"(?=(?:train|tun|modal|task|agent|lingual|supervis|stationar|linear|attent|improv|play|"
    r"distil|refin|reflect|consisten|correct|instruct|generat|evolv|reward))"
)


@dataclass(frozen=True)
class _Token:
    term: str  # the stem
    word: str  # as written (case-folded)
    joined: bool  # directly after the previous token, with no stop word dropped in between


def _phrases(text: str, limit: int) -> list[list[_Token]]:
    """Split text into phrases of stemmed content words (phrases never span punctuation)."""
    text = unicodedata.normalize("NFKC", html.unescape(_TAGS.sub(" ", text[:limit]))).casefold()
    text = _COMPOUND.sub(r"\1_", text)
    phrases = []
    for chunk in _PHRASE_BREAK.split(text):
        tokens: list[_Token] = []
        joined = False
        for w in _WORD.findall(chunk):
            if len(w) < 2 or w.isdigit() or w in STOPWORDS:
                joined = False
                continue
            tokens.append(_Token(stem(w.replace("_", "")), w.replace("_", "-"), joined))
            joined = True
        if tokens:
            phrases.append(tokens)
    return phrases


def _terms(phrases: list[list[_Token]]) -> Iterable[tuple[str, str, bool]]:
    """(term, words it came from, is_bigram) for every word and pair of neighbouring words."""
    for phrase in phrases:
        for i, token in enumerate(phrase):
            yield token.term, token.word, False
            if i:
                prev = phrase[i - 1]
                yield f"{prev.term} {token.term}", f"{prev.word} {token.word}", True


@lru_cache(maxsize=16_384)
def _stems(text: str) -> tuple[str, ...]:
    return tuple(t.term for phrase in _phrases(text, MAX_INTEREST_CHARS) for t in phrase)


# --- lexicon -----------------------------------------------------------------------------------
# Generic ML/AI vocabulary. SYNONYMS: each line lists phrases that name the same thing, so any one
# of them brings in the others. RELATED: the phrase on the left also brings in the ones on the
# right, at a lower weight, but not the other way round.

_SYNONYMS = """
llm | large language model
lm | language model
vlm | vision language model | vision language
mllm | multimodal large language model | multimodal llm
rl | reinforcement learning
drl | deep reinforcement learning | deep rl
marl | multi agent reinforcement learning
rlhf | reinforcement learning from human feedback | learning from human feedback
dpo | direct preference optimization
ppo | proximal policy optimization
mbrl | model based reinforcement learning | model based rl
irl | inverse reinforcement learning
nlp | natural language processing
nlg | natural language generation
cv | computer vision
asr | speech recognition
tts | text to speech
mt | machine translation
qa | question answering
cot | chain of thought
icl | in context learning
sft | supervised fine tuning
peft | parameter efficient fine tuning
lora | low rank adaptation
rag | retrieval augmented generation
kd | knowledge distillation
gan | generative adversarial network
vae | variational autoencoder
vit | vision transformer
cnn | convolutional neural network | convnet
rnn | recurrent neural network
lstm | long short term memory
gnn | graph neural network
moe | mixture of experts
nerf | neural radiance field
ssl | self supervised learning
ood | out of distribution
kg | knowledge graph
hci | human computer interaction
continual learning | lifelong learning | incremental learning
catastrophic forgetting | catastrophic interference
imitation learning | learning from demonstration | behavior cloning | behavioural cloning
meta learning | learning to learn
world model | dynamics model
offline rl | offline reinforcement learning | batch reinforcement learning
in context learning | few shot prompting
instruction tuning | instruction tuned | instruction finetuning
tool use | tool learning | tool augmented
llm agent | language agent | language model agent | llm based agent
chatbot | dialogue system | conversational agent
dialogue | dialog | conversation
summarization | summarisation
optimization | optimisation
quantization | quantisation | low bit
pruning | sparsification
neuroscience | brain inspired | neuro inspired
child | children | infant
education | educational | tutoring | pedagogy | pedagogical
knowledge tracing | student modeling | student modelling
hallucination | factuality | factual consistency
chain of thought | step by step reasoning
"""

_RELATED = """
llm: language model | gpt | chatgpt | transformer
language model: llm | text generation
agent: agents | tool | planning | environment | autonomous
robot: robotic | manipulation | embodied | locomotion | grasping | dexterous
robotics: robot | manipulation | embodied | control
manipulation: robot | grasping | dexterous | gripper
embodied: robot | agent | simulated environment
reinforcement learning: reward | policy | agent | environment
reward model: rlhf | preference | reward
alignment: human feedback | preference | helpful | harmless | rlhf | values
preference: human feedback | reward model | rlhf | alignment
human feedback: preference | alignment | reward model
diffusion: denoising | score based | generative
generative: generation | diffusion | gan
image: vision | visual | pixel
vision: image | visual | video
video: visual | temporal | frame
segmentation: mask | semantic segmentation | pixel
medical: clinical | patient | mri | disease | healthcare | brain
detection: detector | object detection
continual learning: catastrophic forgetting | replay | task incremental | class incremental
catastrophic forgetting: continual learning | replay | stability plasticity
forgetting: catastrophic forgetting | continual learning | retention
replay: rehearsal | experience replay | memory buffer
curriculum: easy to hard | task ordering
imitation learning: demonstration | expert | behavior cloning
demonstration: imitation | expert | teleoperation
meta learning: learning algorithm | learned optimizer | few shot
exploration: curiosity | intrinsic motivation | novelty | open ended
open ended: open endedness | exploration | novelty
skill: skill discovery | primitive | behavior
skill discovery: intrinsic reward | unsupervised skill
reasoning: chain of thought | math | logic | planning
math: mathematical | arithmetic | theorem | gsm8k
mathematical reasoning: math | chain of thought | problem solving
efficient: efficiency | compression | sparse | quantization | pruning | distillation
efficiency: efficient | compression | sparse
compression: quantization | pruning | distillation | sparse
sparse: sparsity | pruning
distillation: teacher | student | compact model
knowledge distillation: teacher model | student model | distill
transformer: attention | self attention
attention: transformer | self attention
in context learning: few shot | prompting
instruction tuning: instruction following | supervised fine tuning | instruction dataset
prompt: prompting | in context learning | few shot
prompting: prompt | in context learning | zero shot
self improvement: self training | self improving | iterative training | bootstrapping
synthetic data: data generation | generated data | self generated
survey: review | overview | taxonomy
benchmark: evaluation | dataset | leaderboard
evaluation: benchmark | metric
interpretability: mechanistic | explainability | probing
mechanistic: interpretability | circuit
brain: neuroscience | neural | biological | cognitive
neuroscience: brain | biological | cognitive
memory: episodic memory | working memory | retention
cognitive science: psychology | human learning | developmental
psychology: cognitive | developmental | human behavior
language acquisition: child | word learning | developmental
education: student | learner | teaching | tutoring | course
tutoring: student | learner | education
multimodal: vision language | image text | visual
vision language: multimodal | image | visual
graph: graph neural network | node | knowledge graph
speech: audio | spoken | asr
audio: speech | sound
code: programming | software | code generation
web: browser | website | navigation
game: video game | atari
planning: planner | search | reasoning
search: retrieval | planning
retrieval: search | retriever | rag
representation learning: representation | embedding | self supervised
self supervised learning: contrastive | representation learning | unsupervised
dialogue: response generation | utterance
"""


@dataclass(frozen=True)
class _Expansion:
    name: str  # the lexicon phrase that triggers it, as written
    phrases: tuple[tuple[str, ...], ...]
    weight: float
    synonym: bool


def _build_lexicon() -> dict[tuple[str, ...], list[_Expansion]]:
    lexicon: dict[tuple[str, ...], list[_Expansion]] = defaultdict(list)
    for line in filter(None, map(str.strip, _SYNONYMS.splitlines())):
        names = [name.strip() for name in line.split("|")]
        group = [_stems(name) for name in names]
        for name, key in zip(names, group):
            others = tuple(g for g in group if g != key)
            lexicon[key].append(_Expansion(name, others, SYNONYM_WEIGHT, True))
    for line in filter(None, map(str.strip, _RELATED.splitlines())):
        left, right = line.split(":", 1)
        related = tuple(_stems(p) for p in right.split("|"))
        lexicon[_stems(left)].append(_Expansion(left.strip(), related, RELATED_WEIGHT, False))
    return dict(lexicon)


_LEXICON = _build_lexicon()
_LEXICON_MAX_WORDS = max(len(key) for key in _LEXICON)


# --- the index -------------------------------------------------------------------------------


def build_index(papers: Sequence[PaperText], now: datetime) -> PaperIndex:
    """Precompute term weights, idf and trending scores for one issue's papers."""
    fields = [_field_terms(p) for p in papers]
    labels = _labels(fields)
    doc_freq = Counter(term for paper in fields for term in {t for c in paper.values() for t, _, _ in c})
    avg_len = {
        f: max(sum(_length(paper[f]) for paper in fields) / max(len(fields), 1), 1.0) for f in FIELD_WEIGHTS
    }
    n = len(papers)
    idf = {t: _idf(n, df) for t, df in doc_freq.items()}
    doc_terms = tuple(_bm25f(paper, idf, avg_len) for paper in fields)
    units = tuple(_unit(weights) for weights in doc_terms)
    postings: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for doc, weights in enumerate(doc_terms):
        for term, weight in weights.items():
            postings[term].append((doc, weight, units[doc][term]))
    return PaperIndex(
        papers=tuple(papers),
        trending=tuple(trending_score(p.upvotes, p.published_at, now) for p in papers),
        postings={t: tuple(p) for t, p in postings.items()},
        doc_terms=doc_terms,
        top_terms=tuple(_profile_terms(u, postings) for u in units),
        idf=idf,
        labels=labels,
        positions={p.id: i for i, p in enumerate(papers)},
        expansions=_expansion_postings(postings),
    )


def _idf(n: int, df: int) -> float:
    """BM25's idf of a term found in `df` of `n` papers."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _expansion_postings(
    postings: Mapping[str, list[tuple[int, float, float]]],
) -> dict[str, tuple[tuple[int, float], ...]]:
    """For each lexicon word or two-word phrase, the papers its expansions match: (doc, sum of
    expansion weight × unit weight), scaled by PROFILE_EXPANSION. Keyed by the term itself, so a
    liked "llm" learned from last week's issue finds this week's "large language model". Only
    an expansion's core terms count (its words and bigrams, not the stray single words of a
    longer phrase such as "large" or "model"): they say little alone, and they are common."""
    expansions: dict[str, tuple[tuple[int, float], ...]] = {}
    if PROFILE_EXPANSION <= 0:
        return expansions
    for key, group in _LEXICON.items():
        if len(key) > 2:  # profile labels are words and bigrams
            continue
        weights: dict[int, float] = defaultdict(float)
        for expansion in group:
            for target in expansion.phrases:
                for term, weight, core in _phrase_keys(target, expansion.weight):
                    if not core:
                        continue
                    for doc, _bm25, unit in postings.get(term, ()):
                        weights[doc] += PROFILE_EXPANSION * weight * unit
        if weights:
            expansions[" ".join(key)] = tuple(weights.items())
    return expansions


def _profile_terms(
    unit: Mapping[str, float], postings: Mapping[str, list[Any]]
) -> tuple[tuple[str, float], ...]:
    """A paper's strongest terms among those shared with another paper: a term found in one
    paper only says nothing about which other papers the reader will like."""
    shared = ((t, w) for t, w in unit.items() if len(postings[t]) > 1)
    return tuple(heapq.nlargest(PROFILE_TERMS_PER_VOTE, shared, key=lambda kv: kv[1]))


def _field_terms(paper: PaperText) -> dict[str, Counter[tuple[str, str, bool]]]:
    texts = {
        "title": paper.title or "",
        "keywords": " . ".join(paper.keywords or ()),
        "abstract": paper.abstract or "",
    }
    return {f: Counter(_terms(_phrases(text, MAX_FIELD_CHARS))) for f, text in texts.items()}


def _labels(fields: list[dict[str, Counter[tuple[str, str, bool]]]]) -> dict[str, str]:
    """For each term, the words it most often came from, to show to readers."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for paper in fields:
        for counts in paper.values():
            for (term, words, _), count in counts.items():
                seen[term][words] += count
    return {term: words.most_common(1)[0][0] for term, words in seen.items()}


def _bm25f(
    paper: dict[str, Counter[tuple[str, str, bool]]],
    idf: Mapping[str, float],
    avg_len: Mapping[str, float],
) -> dict[str, float]:
    tf: dict[str, float] = defaultdict(float)
    for f, counts in paper.items():
        b = FIELD_LENGTH_NORM[f]
        norm = FIELD_WEIGHTS[f] / (1 - b + b * _length(counts) / avg_len[f])
        for (term, _, _), count in counts.items():
            tf[term] += count * norm
    return {t: idf[t] * x * (BM25_K1 + 1) / (x + BM25_K1) for t, x in tf.items()}


def _length(counts: Counter[tuple[str, str, bool]]) -> int:
    return sum(c for (_, _, bigram), c in counts.items() if not bigram)


def _unit(weights: Mapping[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
    return {t: w / norm for t, w in weights.items()}


# --- the reader's query ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Query:
    # (term, weight, shown): shown is the reader's words the term stands for, "" for a term never
    # named in explanations, None for a related term, named as the paper words it.
    terms: tuple[tuple[str, float, str | None], ...]
    concepts: tuple[tuple[str, frozenset[str]], ...]  # a stated word, and terms that match it


@lru_cache(maxsize=1_024)  # ~3 KB each; a sender also remembers whole rankings (digests.py)
def _query(interests: str) -> _Query:
    """The reader's words and bigrams, plus their lexicon expansions at lower weight.

    Each stated word is also a "concept" that a paper covers if it contains the word, a bigram
    with it, or one of its expansions; papers covering more concepts rank higher (see _coverage).
    """
    weights: dict[str, float] = {}
    shown: dict[str, str | None] = {}
    concepts: list[tuple[str, set[str]]] = []

    def add(term: str, weight: float, words: str | None, positions: Iterable[int] = ()) -> None:
        if weight > weights.get(term, 0.0):
            weights[term] = weight
            if words or term not in shown:
                shown[term] = words
        for i in positions:
            concepts[i][1].add(term)

    for phrase in _phrases(interests or "", MAX_INTEREST_CHARS):
        base = len(concepts)
        for i, token in enumerate(phrase):
            concepts.append((token.term, {token.term}))
            add(token.term, 1.0, token.word)
            if i:
                prev = phrase[i - 1]
                words = f"{prev.word} {token.word}" if token.joined else ""
                add(f"{prev.term} {token.term}", BIGRAM_WEIGHT, words, (base + i - 1, base + i))
        for start, end, expansion in _lexicon_matches([t.term for t in phrase]):
            words = _expansion_words(phrase[start:end], expansion)
            # A synonym of a phrase covers all its words; something merely related to a phrase
            # ("vision language" → "visual") covers none of them.
            covers = end - start == 1 or expansion.synonym
            positions = range(base + start, base + end) if covers else range(0)
            for target in expansion.phrases:
                for term, weight, core in _phrase_keys(target, expansion.weight):
                    add(term, weight, words, positions if core else ())
    merged: dict[str, set[str]] = defaultdict(set)  # a word stated twice is one concept
    for word, members in concepts:
        merged[word] |= members
    return _Query(
        terms=tuple((t, w, shown.get(t, "")) for t, w in weights.items()),
        concepts=tuple((word, frozenset(members)) for word, members in merged.items()),
    )


def _expansion_words(span: list[_Token], expansion: _Expansion) -> str | None:
    """How explanations name an expansion found in a paper: by the reader's words for a synonym
    (by the lexicon's phrase if stop words were dropped: "learning from demonstration", not
    "learning demonstration"), and by the paper's own words (None) for a related term."""
    if not expansion.synonym:
        return None
    if all(t.joined for t in span[1:]):
        return " ".join(t.word for t in span)
    return expansion.name


def _lexicon_matches(stems: list[str]) -> Iterable[tuple[int, int, _Expansion]]:
    for start in range(len(stems)):
        for end in range(start + 1, min(start + _LEXICON_MAX_WORDS, len(stems)) + 1):
            for expansion in _LEXICON.get(tuple(stems[start:end]), ()):
                yield start, end, expansion


def _phrase_keys(stems: tuple[str, ...], weight: float) -> list[tuple[str, float, bool]]:
    """(term, weight, core): a word at full weight; a phrase mostly by its bigrams, a little by
    its single words (which alone do not count as covering the concept)."""
    if len(stems) == 1:
        return [(stems[0], weight, True)]
    pairs = len(stems) - 1
    return [(f"{a} {b}", weight / pairs, True) for a, b in itertools.pairwise(stems)] + [
        (s, weight / 2 / len(stems), False) for s in stems
    ]


@lru_cache(maxsize=16_384)
def _term_key(label: str) -> str | None:
    """The index term for a profile label ("continual learning" → "continual learn")."""
    stems = _stems(label)
    if len(stems) == 1:
        return stems[0]
    if len(stems) == 2:
        return f"{stems[0]} {stems[1]}"
    return None


# --- ranking -----------------------------------------------------------------------------------


def rank_papers(
    index: PaperIndex,
    interests: str,
    *,
    profile: dict[str, Any] | None = None,
    exclude: Collection[int] = (),
    limit: int = 10,
) -> list[RankedItem]:
    """The `limit` best papers for one reader, best first, never one of `exclude`.

    Relevance to the stated interests and to the learned profile (if any) is blended with
    trending; with no usable interests and no profile the order is the trending order.
    """
    if limit <= 0 or not index.papers:
        return []
    excluded = set(exclude)
    candidates = [d for d, p in enumerate(index.papers) if p.id not in excluded]
    query = _query(interests[:MAX_INTEREST_CHARS] if isinstance(interests, str) else "")
    profile = _clean_profile(profile)
    stated, learned = _relevance_parts(index, query, profile, candidates)
    relevance = [s + p for s, p in zip(stated, learned)]
    score = [(1 - TRENDING_WEIGHT) * r + TRENDING_WEIGHT * t for r, t in zip(relevance, index.trending)]
    best = heapq.nlargest(limit, candidates, key=lambda d: (score[d], index.trending[d], -d))
    return [
        _item(index, d, score[d], relevance[d], query, profile["liked"], learned[d] > stated[d]) for d in best
    ]


def _relevance_parts(
    index: PaperIndex, query: _Query, profile: dict[str, Any], candidates: list[int]
) -> tuple[list[float], list[float]]:
    """Per paper, the parts of its relevance due to the stated interests and to the profile.

    Three scores, each scaled to 0..1 over the candidates: the stated interests, resemblance to
    liked papers and resemblance to disliked ones (Rocchio with each side normalised on its own,
    so that twenty dislikes do not drown one like). The stated and liked parts share a weight of
    1: the profile's grows as votes / PROFILE_FULL_VOTES up to 1, and the stated interests' is 1,
    less when they are vague (`_specificity`), 0 when they match nothing. Resembling disliked
    papers then subtracts up to PROFILE_DISLIKED_WEIGHT. Without votes this is the stated score.
    """
    stated = _scaled(_stated_scores(index, query), candidates)
    has_stated = any(stated[d] for d in candidates)
    if not profile["terms"]:
        return stated, [0.0] * len(stated)
    liked, disliked = (_scaled(s, candidates) for s in _profile_scores(index, profile["terms"]))
    trust = min(profile["votes"] / PROFILE_FULL_VOTES, 1.0)
    w_liked = trust if any(liked[d] for d in candidates) else 0.0
    w_stated = 0.0
    if has_stated:
        w_stated = _specificity(index, query) if w_liked else 1.0
    total = (w_stated + w_liked) or 1.0
    push = PROFILE_DISLIKED_WEIGHT * trust
    return (
        [w_stated * s / total for s in stated],
        [w_liked * p / total - push * n for p, n in zip(liked, disliked)],
    )


def _specificity(index: PaperIndex, query: _Query) -> float:
    """How far the stated interests narrow this issue down, 0..1: the idf of each stated word
    (with its synonyms) relative to that of a word found in one paper, summed, over
    STATED_FULL_SPECIFICITY. "learning" is in nearly every paper and says little about which
    ones the reader wants; "offline RL" says a lot."""
    if STATED_FULL_SPECIFICITY <= 0:
        return 1.0
    n = len(index.papers)
    total = 0.0
    for _word, members in query.concepts:
        docs = {doc for term in members for doc, _, _ in index.postings.get(term, ())}
        if docs:
            total += _idf(n, len(docs))
    return min(total / _idf(n, 1) / STATED_FULL_SPECIFICITY, 1.0)


def _stated_scores(index: PaperIndex, query: _Query) -> list[float]:
    """BM25F score of each paper for the query, scaled down for the reader's words it lacks."""
    return [s * c for s, c in zip(_bm25(index, query.terms), _coverage(index, query))]


def _bm25(index: PaperIndex, terms: Iterable[tuple[str, float, str | None]]) -> list[float]:
    scores = [0.0] * len(index.papers)
    for term, weight, _ in terms:
        for doc, bm25, _unit in index.postings.get(term, ()):
            scores[doc] += weight * bm25
    return scores


def _coverage(index: PaperIndex, query: _Query) -> list[float]:
    """Per paper, 1 - COVERAGE_WEIGHT × (idf share of the reader's words it does not cover)."""
    covered = [0.0] * len(index.papers)
    total = 0.0
    for word, members in query.concepts:
        weight = index.idf.get(word, 0.0)
        total += weight
        docs = {doc for term in members for doc, _, _ in index.postings.get(term, ())}
        for doc in docs:
            covered[doc] += weight
    if total == 0:
        return [1.0] * len(index.papers)
    return [1 - COVERAGE_WEIGHT * (1 - c / total) for c in covered]


def _scaled(scores: list[float], candidates: list[int]) -> list[float]:
    """Scores in -1..1: positive ones divided by the best candidate's, negative ones by the
    worst's. Only candidates count: a paper already sent (often the one the reader liked) must
    not make every other paper look like a weak match."""
    top = max((scores[d] for d in candidates), default=0.0)
    bottom = min((scores[d] for d in candidates), default=0.0)
    up = top if top > 0 else 1.0
    down = -bottom if bottom < 0 else 1.0
    return [s / up if s > 0 else s / down for s in scores]


def _profile_scores(index: PaperIndex, terms: Mapping[str, float]) -> tuple[list[float], list[float]]:
    """Dot products of each paper's unit term vector with the liked (positive) and with the
    disliked (negative, as positive numbers) learned term weights. Liked words also match their
    lexicon expansions, as stated interests do; disliked ones match only themselves."""
    liked = [0.0] * len(index.papers)
    disliked = [0.0] * len(index.papers)
    postings, expansions = index.postings, index.expansions
    for label, weight in terms.items():
        key = _term_key(label)
        if key is None:
            continue
        if weight > 0:
            for doc, _bm25, unit in postings.get(key, ()):
                liked[doc] += weight * unit
            for doc, unit in expansions.get(key, ()):
                liked[doc] += weight * unit
        else:
            for doc, _bm25, unit in postings.get(key, ()):
                disliked[doc] -= weight * unit
    return liked, disliked


# --- explanations ------------------------------------------------------------------------------


def _item(
    index: PaperIndex,
    doc: int,
    score: float,
    relevance: float,
    query: _Query,
    liked: list[str],
    from_profile: bool,
) -> RankedItem:
    """The item for one paper, and the reason it was chosen."""
    matched = _matched_words(index, doc, query) if relevance >= MIN_RELEVANCE else []
    own = [words for words, related in matched if not related]
    if relevance < MIN_RELEVANCE:
        why = TRENDING_WHY
    elif from_profile and liked:
        why = f"Because you liked “{shorten(_closest_title(index, doc, liked), 80, one_line=True)}”"
    elif matched:
        why = "Matches your interests: " + ", ".join(own[:3] or [w for w, _ in matched[:3]])
    else:
        why = "Close to papers you liked" if from_profile else "Close to your interests"
    return RankedItem(
        paper_id=index.papers[doc].id,
        score=round(score, 6),
        relevance=round(relevance, 6),
        trending=round(index.trending[doc], 6),
        why=why,
        matched_terms=tuple(words for words, _ in matched),
    )


def _matched_words(index: PaperIndex, doc: int, query: _Query) -> list[tuple[str, bool]]:
    """(words, is_related) for the query terms found in the paper, most important first.

    A synonym found in the paper shows as the words the reader used ("LLM" for "large language
    model"); a related term shows as the paper words it ("manipulation" for "robot"), after the
    reader's own words. Single words already shown inside a phrase are left out.
    """
    weights = index.doc_terms[doc]
    found: dict[tuple[bool, str], float] = defaultdict(float)
    for term, weight, shown in query.terms:
        if shown != "" and term in weights:
            found[shown is None, shown or index.labels.get(term, term)] += weight * weights[term]
    floor = MATCH_SHOWN_SHARE * max(found.values(), default=0.0)
    named: list[tuple[bool, str]] = []
    for related, words in sorted(found, key=lambda k: (k[0], -found[k])):
        if found[related, words] < floor or any(_within(words, w) for _, w in named):
            continue
        if related and any(_overlap(words, w) for r, w in named if not r):
            continue  # "semantic segmentation" adds nothing to the reader's "segmentation"
        # a phrase replaces its own single words: "continual learning", not "continual"
        named = [(r, w) for r, w in named if r != related or not _within(w, words)]
        named.append((related, words))
    return [(w, r) for r, w in named[:5]]


def _within(words: str, other: str) -> bool:
    return set(words.split()) <= set(other.split())


def _overlap(words: str, other: str) -> bool:
    return bool(set(words.split()) & set(other.split()))


def _closest_title(index: PaperIndex, doc: int, liked: list[str]) -> str:
    """The liked title sharing the most weight with the paper; ties go to the most recent."""
    weights = index.doc_terms[doc]
    return max(reversed(liked), key=lambda t: sum(weights.get(s, 0.0) for s in set(_stems(t))))


# --- feedback ------------------------------------------------------------------------------------


def update_profile(
    profile: dict[str, Any] | None, index: PaperIndex, paper_id: int, direction: int
) -> dict[str, Any]:
    """Return a new profile after a "more like this" (+1) or "less like this" (-1) vote.

    Rocchio: the learned term vector moves towards (+1) the paper's strongest terms, or away
    (-1) from its distinctive ones (a word most papers share, such as "learning", hardly moves:
    see PROFILE_DISLIKE_IDF); older weights fade slightly. At most PROFILE_MAX_TERMS weights
    are kept (`_strongest`). The result is plain JSON: {"terms": {label: weight}, "liked":
    [titles, most recent last], "disliked": [...], "votes": n}. Raises KeyError if the paper is
    not in the index.
    """
    if direction not in (1, -1):
        raise ValueError("direction must be +1 or -1")
    doc = index.positions[paper_id]
    old = _clean_profile(profile)
    terms = {label: w * PROFILE_DECAY for label, w in old["terms"].items()}
    rare = _idf(len(index.papers), 1)
    for term, unit in index.top_terms[doc]:
        label = index.labels.get(term, term)
        if direction > 0:
            step = PROFILE_LIKE * unit
        else:
            step = -PROFILE_DISLIKE * unit * (index.idf.get(term, 0.0) / rare) ** PROFILE_DISLIKE_IDF
        terms[label] = terms.get(label, 0.0) + step
    kept = _strongest(terms)
    title = shorten(index.papers[doc].title, 300, one_line=True)
    mine, other = ("liked", "disliked") if direction > 0 else ("disliked", "liked")
    return {
        "terms": {label: round(w, 4) for label, w in kept if abs(w) >= 1e-4},
        mine: ([t for t in old[mine] if t != title] + [title])[-PROFILE_MAX_TITLES:],
        other: [t for t in old[other] if t != title],
        "votes": old["votes"] + 1,
    }


def describe_profile(profile: dict[str, Any] | None, limit: int = 10) -> list[tuple[str, float]]:
    """The learned terms that matter most, strongest first, for a preferences page."""
    terms = _clean_profile(profile)["terms"]
    return heapq.nlargest(limit, terms.items(), key=lambda kv: abs(kv[1]))


def _clean_profile(profile: Any) -> dict[str, Any]:
    """A well-formed profile, whatever was stored (None, {}, hand-edited JSON)."""
    profile = profile if isinstance(profile, dict) else {}
    terms = profile.get("terms")
    votes = profile.get("votes")
    weights = {
        str(k): float(v)
        for k, v in (terms.items() if isinstance(terms, dict) else ())
        if isinstance(v, (int, float)) and -PROFILE_MAX_WEIGHT <= v <= PROFILE_MAX_WEIGHT
    }  # NaN, infinities and absurd weights are dropped
    if len(weights) > PROFILE_MAX_TERMS:
        weights = dict(_strongest(weights))
    return {
        "terms": weights,
        "liked": _titles(profile.get("liked")),
        "disliked": _titles(profile.get("disliked")),
        "votes": votes if isinstance(votes, int) and votes > 0 else 0,
    }


def _strongest(terms: Mapping[str, float]) -> list[tuple[str, float]]:
    """The PROFILE_MAX_TERMS weights to keep: the strongest liked ones, up to PROFILE_LIKED_SHARE
    of the slots, then the largest |weights| of the rest. Likes are rarer and say more than
    dislikes, so a run of "less like this" must not push out what the reader liked."""
    liked = heapq.nlargest(
        int(PROFILE_MAX_TERMS * PROFILE_LIKED_SHARE),
        ((k, w) for k, w in terms.items() if w > 0),
        key=lambda kv: kv[1],
    )
    chosen = {k for k, _ in liked}
    rest = ((k, w) for k, w in terms.items() if k not in chosen)
    return liked + heapq.nlargest(PROFILE_MAX_TERMS - len(liked), rest, key=lambda kv: abs(kv[1]))


def _titles(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [shorten(t, 300, one_line=True) for t in value if isinstance(t, str)][-PROFILE_MAX_TITLES:]
