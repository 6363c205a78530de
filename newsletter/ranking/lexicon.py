"""The research-topic lexicon: phrases that bring other phrases into a reader's query.

SYNONYMS: each line lists phrases that name the same thing, so any one of them brings in the
others (at `RankingParams.synonym_weight`). RELATED: the phrase on the left also brings in the
ones on the right, at `RankingParams.related_weight`, but not the other way round. Phrases are
kept as their stems, so "robots" in a reader's interests finds the entry for "robot".
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from newsletter.ranking.text import stems

# Generic ML/AI vocabulary.
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
class Expansion:
    name: str  # the lexicon phrase that triggers it, as written
    phrases: tuple[tuple[str, ...], ...]  # what it brings in, as stems
    weight: float
    synonym: bool


@dataclass(frozen=True)
class Lexicon:
    entries: dict[tuple[str, ...], tuple[Expansion, ...]]  # the stems of a phrase → its expansions
    max_words: int  # the longest phrase, in words

    def matches(self, phrase: list[str]) -> Iterator[tuple[int, int, Expansion]]:
        """(start, end, expansion) for every lexicon phrase found in a phrase's stems."""
        for start in range(len(phrase)):
            for end in range(start + 1, min(start + self.max_words, len(phrase)) + 1):
                for expansion in self.entries.get(tuple(phrase[start:end]), ()):
                    yield start, end, expansion


@lru_cache(maxsize=8)
def lexicon(synonym_weight: float, related_weight: float) -> Lexicon:
    """The lexicon with its expansions weighted as given (built once per pair of weights)."""
    entries: dict[tuple[str, ...], list[Expansion]] = defaultdict(list)
    for line in filter(None, map(str.strip, _SYNONYMS.splitlines())):
        names = [name.strip() for name in line.split("|")]
        group = [stems(name) for name in names]
        for name, key in zip(names, group, strict=True):
            others = tuple(g for g in group if g != key)
            entries[key].append(Expansion(name, others, synonym_weight, True))
    for line in filter(None, map(str.strip, _RELATED.splitlines())):
        left, right = line.split(":", 1)
        related = tuple(stems(p) for p in right.split("|"))
        entries[stems(left)].append(Expansion(left.strip(), related, related_weight, False))
    return Lexicon({k: tuple(v) for k, v in entries.items()}, max(len(key) for key in entries))


def phrase_keys(phrase: tuple[str, ...], weight: float) -> list[tuple[str, float, bool]]:
    """(term, weight, core): a word at full weight; a phrase mostly by its bigrams, a little by
    its single words (which alone do not count as covering the concept)."""
    if len(phrase) == 1:
        return [(phrase[0], weight, True)]
    pairs = len(phrase) - 1
    return [(f"{a} {b}", weight / pairs, True) for a, b in itertools.pairwise(phrase)] + [
        (s, weight / 2 / len(phrase), False) for s in phrase
    ]
