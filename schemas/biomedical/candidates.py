"""Biomedical candidate kinds: spans of a text that may fill a field of the biomedical schema.

A field of ``schemas/biomedical/model.py`` opts in with ``json_schema_extra={"candidates": kind}``.
``rules`` builds records from these spans and ``select`` constrains the model's choice to them,
so every value is a span of the text. Generators are patterns of English biomedical writing
(name shapes, disease-word morphology, citation layout), never strings of particular
documents. Each returns candidates in text order, without duplicates. The generic kinds
(``date``, ``doi``, ``title``) come from ``pipeline.candidates``.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable
from functools import lru_cache

from rapidfuzz import fuzz

from pipeline.candidates import FUNCTION_WORDS, Locator
from pipeline.candidates import unique as _unique
from pipeline.core.domain import CandidateKind, Finder
from pipeline.merge import abbreviation_pairs
from schemas.biomedical import apposition, tagger, vocab
from schemas.biomedical.vocab.gazetteer import Keep

CONNECT = r"(?:of|de|del|la|for|and|&|the|d'|für|di)"
CAP = r"(?:[A-Z][\w'’&.-]*[\w.]|[A-Z])"
ORG_HEADS = (
    r"(?i:Inc)\.?|Ltd\.?|LLC|GmbH|AG|S\.A\.|plc|Therapeutics|Pharmaceuticals?|Biotherapeutics|Biotechnology|Biosciences|"
    r"Bio|Pharma|Hospital|Hospitals|University|College|School(?: of Medicine)?|Institute|Foundation|Association|"
    r"Agency|Administration|Ministry|Council|Center|Centre|Society|Clinic|Trust|Alliance|Program|Programme|"
    r"Laboratories|Labs|Group|Network|Consortium|Medicine|Committee"
)
#: regulators of medicines and devices (the spec: "any regulator")
REGULATORS = (
    r"FDA|EMA|MHRA|NMPA|PMDA|TGA|Health Canada|CHMP|PRAC|Swissmedic|ANVISA|CDSCO|MHLW|European Medicines Agency|"
    r"European Commission|Committee for Medicinal Products for Human Use|"
    r"Medicines and Healthcare products Regulatory Agency|Pharmaceuticals and Medical Devices Agency|"
    r"National Medical Products Administration|Therapeutic Goods Administration|"
    r"(?:U\.?S\.? )?Food and Drug Administration"
)
DISEASE_HEADS = (
    r"\w*(?:itis|osis|emia|aemia|oma|omas|pathy|pathies|plasia|trophy)|diseases?|disorders?|syndromes?|gravis|"
    r"erythematosus|infections?|fever|failure|cancers?|leuka?emias?|arthritis|sclerosis|myositis|vasculitis|"
    r"fibrosis|neuropathy|toxicity|myeloma|lymphoma|lupus|nephritis|palsy|dystrophy|deficiency|injury|"
    r"ha?emorrhages?"
)
MODIFIER = r"(?:\([A-Za-z0-9+-]+\)-?)?[A-Za-z0-9+-]+(?:['’]s\b)?|\([A-Za-z0-9+-]+\)"
STOP_MODIFIERS = {
    "the", "a", "an", "with", "in", "of", "for", "and", "or", "to", "from", "by", "on", "is", "are", "was",
    "were", "his", "her", "their", "its", "this", "these", "that", "patients", "patient", "treat", "treatment",
    "not", "no", "including", "such", "as", "than", "most", "many", "all", "other", "additional", "some",
    "severe", "refractory", "aggressive", "cause", "number", "one", "seven", "two", "adults", "children", "both",
    "which", "includes", "include", "drive", "drives", "cells", "across", "developed", "grade", "mainly",
    "potentially", "fatal", "incurable", "against", "target", "targets", "has", "have", "had", "be", "been",
}  # fmt: skip
# Spec: umbrella classes ("autoimmune diseases", "rheumatic diseases") are not conditions.
UMBRELLA_HEAD = re.compile(r"^(?:diseases?|disorders?|conditions?|syndromes?|cancers?)$", re.IGNORECASE)
# a disease word that names something else: "Cancer Institute", "disease designation"
NOT_A_CONDITION_AFTER = re.compile(
    r"^\s+(?:Institute|Foundation|Cent(?:er|re)|Society|Association|Research|Alliance|Fund|Council|designation|"
    r"area|areas|activity|modifying|progression|course|burden|control|state|severity|center|awareness|Studies|"
    r"Unit|Department|Service|Program|Programme|rates?|types?|risk)\b"
)
#: a disease word inside an institution's name: "Department of Psychosis Studies", "Centre for Mental Health"
NOT_A_CONDITION_BEFORE = re.compile(
    r"\b(?:Department|Dept\.?|Division|Institute|Unit|Cent(?:er|re)|School|Society|Foundation|Association|"
    r"Journal|Program(?:me)?|Clinic)\s+(?:of|for)\s+(?:the\s+)?(?:[A-Z][\w-]*\s+)*$"
)
CLASS_WORDS = {
    "autoimmune", "rheumatic", "neurological", "neurologic", "inflammatory", "neuro-inflammatory", "chronic",
    "rare", "infectious", "complex", "other", "systemic", "b-cell", "mediated", "immune-mediated", "genetic",
    "serious", "life-threatening", "debilitating", "various", "several", "these", "those", "related", "multiple",
}  # fmt: skip


def conditions(text: str) -> list[str]:
    """Disease names of the vocabularies (ICD-10-CM, HPO) and disease-shaped phrases
    (``disease_phrases``), in text order; umbrella classes are left out of both."""
    return in_text_order(text, disease_phrases(text), vocabulary_diseases(text))


def vocabulary_diseases(text: str) -> list[str]:
    """ICD-10-CM and HPO names, less umbrella classes ("autoimmune diseases", "cancer") and
    disease words that name something else ("Cancer Institute")."""
    text = AFFILIATION_LIST.sub(lambda m: " " * len(m.group(0)), text) if affiliations(text) else text

    def keep(t: str, start: int, end: int, n: int) -> bool:
        *mods, head = t[start:end].split()
        if UMBRELLA_HEAD.match(head) and all(w.lower() in CLASS_WORDS for w in mods):
            return False
        if head.lower() == "cells" or t[max(0, start - 5) : start].lower() == "anti-":
            return False  # cells ("target cells") and antibodies ("Anti-melanoma ...") are no disease
        return not NOT_A_CONDITION_AFTER.match(t[end : end + 20]) and not NOT_A_CONDITION_BEFORE.search(
            t[max(0, start - 80) : start]
        )

    return in_text_order(text, vocab.gazetteer("diseases").find(text, keep), defined_conditions(text, keep))


def defined_conditions(text: str, keep: Keep) -> list[str]:
    """The long form of an abbreviation the text defines (Schwartz-Hearst, ``abbreviations``),
    carried left to the start of its noun phrase, where it holds a disease name: "amyloid-related
    imaging abnormalities with edema or effusion (ARIA-E)"."""
    pairs = abbreviation_pairs(text, first=False)
    out = []
    for short, long in pairs.items():
        m = re.search(rf"{re.escape(long)}\s*\({re.escape(short)}\)", text)
        if m is None:
            continue
        # up to four words before it (a search with them in the pattern tried every position of the text)
        before = re.search(r"(?:[\w'’-]+\s+){0,4}$", text[max(0, m.start() - 400) : m.start()])
        lead = before.group(0).split() if before else []
        while lead and lead[0].lower() in FUNCTION_WORDS | STOP_MODIFIERS:
            lead = lead[1:]
        for i, word in enumerate(lead):
            if word.lower() in FUNCTION_WORDS | STOP_MODIFIERS:
                lead = lead[i + 1 :]
        phrase = " ".join([*lead, long])
        if phrase in text and vocab.gazetteer("diseases").find(phrase, keep):
            out.append(phrase)
    return out


def in_text_order(text: str, *groups: list[str]) -> list[str]:
    """The union of candidate lists, each candidate once, ordered by its first place in ``text``."""
    items = _unique(c for g in groups for c in g)
    return sorted(items, key=lambda c: text.find(c) if c in text else len(text))


def disease_phrases(text: str) -> list[str]:
    """Disease-shaped noun phrases: up to 4 modifiers before a disease head word, every
    left-trimmed variant (the model picks the right extent), and "expansion (ABBR)" pairs."""
    out: list[str] = []
    text = AFFILIATION_LIST.sub(lambda m: " " * len(m.group(0)), text) if affiliations(text) else text
    for m in re.finditer(rf"\b({DISEASE_HEADS})\b", text, re.IGNORECASE):
        if (
            NOT_A_CONDITION_AFTER.match(text[m.end() : m.end() + 20])
            or NOT_A_CONDITION_BEFORE.search(text[max(0, m.start() - 80) : m.start()])
            or text[max(0, m.start() - 5) : m.start()].lower() == "anti-"  # an antibody's name
        ):
            continue
        before = text[max(0, m.start() - 80) : m.start()].rsplit("\n", 1)[-1]
        words = re.findall(MODIFIER, before)
        mods: list[str] = []
        for w in reversed(words):
            if w.lower() in STOP_MODIFIERS or w.isdigit() or len(mods) == 5:
                break
            mods.insert(0, w)
        for i in range(len(mods) + 1):
            head = m.group(1)
            if UMBRELLA_HEAD.match(head) and all(w.lower() in CLASS_WORDS for w in mods[i:]):
                continue  # an umbrella class, or a bare head word
            out.append(" ".join([*mods[i:], head]))
    return _unique(out)


def abbreviations(text: str) -> list[str]:
    """Short upper-case tokens defined in parentheses: "... (RPILD)", "(MDA5+DM)"."""
    return _unique(m.group(1) for m in re.finditer(r"\(([A-Z][A-Za-z0-9+/-]{1,14})\)", text))


def therapies(text: str) -> list[str]:
    """Drug and drug-class names of the drug dictionary, and the shapes it lacks (``product_names``)."""
    return in_text_order(text, product_names(text), vocab.drugs(text), vocab.drug_classes(text))


def product_names(text: str) -> list[str]:
    """Product codes and names: Descartes-08-like (word-digits), SC291/CT103A-like codes,
    INN stems (-mab, -cel, -tinib, -leucel), and "X CAR-T cell therapy" phrases."""
    pats = [
        r"\b[A-Z][A-Za-z]{1,12}-\d{2,5}[A-Za-z]?\b",
        r"\b[A-Z]{1,4}\d{2,5}[A-Z]?\b",
        r"\b(?:[A-Za-z]{3,}(?:cabtagene|tagene) [a-z]{3,}(?:leucel|cel)\b|[a-z]{3,}(?:mab|cel|leucel|tinib|ciclib|parib)\b(?: \([a-z-]+\))?)",
        r"\b(?:[A-Z0-9]+[- ])?(?i:anti-)?[A-Z]{2,5}\d{0,3}[- ]?(?:directed |targeting |targeted )?CAR[- ]?T(?i:[- ]cells?)?(?i: cell)?(?i: therapy| therapies)?\b",
        r"\b(?i:mRNA |allogeneic |autologous )?CAR[- ]T(?i: cell therapy| cell therapies| cells?)\b",
    ]
    found = [
        (m.start(), m.group(0)) for p in pats for m in re.finditer(p, text) if text[m.start() - 1 : m.start()] != "/"
    ]
    noise = re.compile(r"^(?:NCT\d+|[A-Z]{2,4}\d{1,2}|PI\d+|S\d{4}|COVID-19)$")  # registry ids, CD19-like targets
    postcode = re.compile(r"[A-Z]{1,2}\d{1,2}[A-Z]? \d[A-Z]{2}\b")  # "London E13 8SP": an address
    trial_names = set(re.findall(r"\b([A-Z][\w-]+)(?= (?:trial|study)\b)|(?:called|named) ([A-Z][\w-]+)", text))
    names = {n for pair in trial_names for n in pair if n}
    return _unique(
        s for at, s in sorted(found) if not noise.match(s) and s not in names and not postcode.match(text, at)
    )


GENERIC_THERAPY = re.compile(r"\bCAR[- ]?T\b|\btherap(?:y|ies)$|\bcells?$|\bvaccines?$", re.IGNORECASE)


def is_generic_therapy(name: str) -> bool:
    """A class phrase ("CAR T cells", "CD19 CAR-T cell therapy", "antipsychotics": a class of the
    drug dictionary) rather than a product name or code."""
    if vocab.is_drug_class(name):
        return True
    return bool(GENERIC_THERAPY.search(name)) and not re.search(
        r"[A-Za-z]-?\d{2,}|\d{2,}[A-Z]", name.replace("CD19", "")
    )


def targets(text: str) -> list[str]:
    return _unique(m.group(0) for m in re.finditer(r"\b(?:CD\d{1,3}|BCMA|CD19|HER2|GPRC5D|BAFF-?R?|CD38)\b", text))


PERSON_NAME = (
    r"(?:[A-Z][^\W\d_]+|[A-Z]\.)(?: [A-Z]\.?)*"
    r"(?: [A-Z](?:['’][A-Z])?[^\W\d_'’]+(?:-[A-Z][^\W\d_]+)?){1,3}(?![^\W\d_'’])"
)
CREDENTIALS = r"(?:MD|PhD|PharmD|MSc|MPH|RN|DO|MBBS|FRCP|BCGP|M\.D\.|Ph\.D\.|MBA|DrPH|FACP|FACC|MS|MSN|BSN|DNP)"


def people(text: str) -> list[str]:
    """Person-name shapes next to credentials, 'et al.', speech verbs, titles, a byline ("| Name",
    "By Name") or in an author list (numbered: "Name1, Name2"; with roles: "Name, professor of X1,")."""
    name = PERSON_NAME
    pats = [
        rf"({name}),? {CREDENTIALS}(?!\w)",
        rf"({name}) et al\b",
        rf"(?:says|said|according to) ({name})",
        rf"({name}),? (?:says|said)\b",
        rf"(?:Dr\.|Prof\.|Professor) ({name})",
        rf"(?:^|, | and )({name})\d{{1,2}}(?=,| and)",
        rf"(?:\|[ \t]*|^[ \t]*By[ \t]+)({name})[ \t]*$",
        rf"^\s*(?:\d{{1,2}}\.\s+)?({name}), [a-z][\w ,&-]*?[a-z]\d{{1,2}},?\s*$",
    ]
    found = (m.group(1) for p in pats for m in re.finditer(p, text, re.MULTILINE))
    return _unique(n for n in found if not re.match(r"(?:The|This|That|These|A|An|In|On|At|For)\b", n))


def credentials(text: str) -> list[str]:
    return _unique(m.group(0).strip(", ") for m in re.finditer(rf"(?:,? {CREDENTIALS}(?!\w))+", text))


def organizations(text: str) -> list[str]:
    """Capitalized names ending in an organization head word, regulators, and acronyms
    introduced as funders or parties ("from the ISC-III", "by the X")."""
    out = affiliations(text)
    if out:  # the list's own pieces replace the name regex over it, which would join neighbours
        text = AFFILIATION_LIST.sub(lambda m: " " * len(m.group(0)), text)
    # a head word is a whole word ("Bio" is not in "Biogen", "Trust" not in "Trustees")
    pat = rf"\b((?:{CAP} (?:{CONNECT} )*)*?(?:{CAP} )?(?:{ORG_HEADS})(?![\w-])(?:(?: {CONNECT})+(?: {CAP})+)*)"
    for m in re.finditer(pat, text):
        phrase = re.sub(r"^(?:The|the|A|An)\s+", "", m.group(1)).strip()
        phrase = re.sub(r"^(?:Inc|Ltd|LLC|Corp|Co)\.?,?\s+(?:and\s+|&\s+)?", "", phrase)  # the last name's suffix
        if len(phrase.split()) >= 2 or phrase.isupper():
            out.append(phrase)
    out += [m.group(0) for m in re.finditer(rf"\b(?:{REGULATORS})\b", text)]
    out += [  # "an FDA advisory committee", "the EMA's scientific advisory group"
        m.group(0)
        for m in re.finditer(
            rf"\b(?:{REGULATORS})(?:’s|'s)? (?:[\w-]+ ){{0,3}}?advisory (?:committee|panel|group|board)\b", text
        )
    ]
    out += [
        m.group(1)
        for m in re.finditer(
            rf"\b(?:from|by|of) the ((?:{CAP})(?: (?:{CONNECT} )?{CAP}){{0,5}})(?= \(|,|\.| and)", text
        )
    ]
    code = re.compile(r"\b[A-Z]{1,4}\d{2,5}[A-Z]?\b")  # a product code is not part of an organization name
    return _unique(o for o in out if not code.search(o))


# "1University College London, London, United Kingdom, 2Manchester Royal Infirmary, ..."
AFFILIATION_MARK = re.compile(r"(?:^|(?<=, )|(?<=\n))\d{1,2}(?=[A-Z][a-z])")
AFFILIATION_LIST = re.compile(r"(?m)(?:^|(?<=, ))\d{1,2}[A-Z][a-z].*$")


def affiliations(text: str) -> list[str]:
    """Organizations of a numbered affiliation list (3+ markers glued to names): each
    comma- or "and"-separated piece that holds an organization head word; places are dropped."""
    out: list[str] = []
    for line in AFFILIATION_LIST.finditer(text):
        segments = [seg for seg in AFFILIATION_MARK.split(line.group(0)) if seg.strip()]
        if len(segments) < 3:
            continue
        for seg in segments:
            for piece in re.split(r",\s+|\s+and\s+", seg):
                piece = piece.strip(" ,;.")
                if re.search(rf"\b(?:{ORG_HEADS}|Infirmary|Universitari|Universitat|Universit\w+)\b", piece):
                    out.append(piece)
    return _unique(out)


def agencies(text: str) -> list[str]:
    return _unique(m.group(0) for m in re.finditer(rf"\b(?:{REGULATORS})\b", text))


#: a regulatory action's head noun, and the words that may stand before it
ACTION_HEAD = (
    r"(?:[Dd]esignation|[Aa]pproval|[Cc]learance|[Aa]greement|[Aa]uthori[sz]ation|[Oo]pinion|[Ee]xemption|"
    r"[Ll]icen[cs]e)"
)
ACTION_WORDS = (
    r"(?:[A-Z][\w-]*|rare|pediatric|paediatric|orphan|disease|fast|track|breakthrough|therapy|priority|review|"
    r"accelerated|protocol|special|assessment|regenerative|medicine|advanced|investigational|new|drug|IND|"
    r"\(IND\)|application|premarket|pre-market|humanitarian|device|conditional|marketing|positive|negative|full|"
    r"traditional|emergency|use|biologics?|supplemental|standard|expanded|access|510\(k\)|de novo|market)"
)
#: a headline verb before the action ("... Receives FDA’s Rare Pediatric Designation")
HEADLINE_VERB = re.compile(
    r"^.*?\b(?:Announces|Receives|Grants|Gets|Wins|Earns|Secures|Awards|Issues|Granted|Receive|Grant)\s+"
)
#: verbs of a regulator's decision, with the regulator as their agent
DECISION = r"(?:approved|cleared|granted|authori[sz]ed|recommended|accepted)"


def actions(text: str) -> list[str]:
    """Regulatory actions as written: noun phrases ('<modifiers> Designation', 'accelerated
    approval', 'positive opinion', 'humanitarian device exemption'), a decision verb whose agent
    is a regulator ('the FDA has approved', 'approved by the FDA'), 'cleared an ... application',
    and 'under the X process'."""
    out = []
    for m in re.finditer(rf"((?:{ACTION_WORDS}\s){{0,6}}{ACTION_HEAD})(?![\w-])", text):
        phrase = re.sub(rf"^(?:.*\b(?:{REGULATORS})(?:’s|'s)?\s+)", "", m.group(1))
        phrase = HEADLINE_VERB.sub("", phrase)
        out.append(re.sub(r"^(?:[Tt]he|[Aa]n?|[Tt]his|[Tt]hat|[Ii]ts|[Tt]heir|[Oo]ur)\s+", "", phrase))
    out += [
        m.group(1)
        for m in re.finditer(r"under the ((?:[A-Z][\w-]*\s?){1,5}?) (?:process|pathway|program|programme)", text)
    ]
    out += [
        m.group(0)
        for m in re.finditer(
            r"\b(?:cleared|accepted|approved|granted)\s+(?:an?|the|its)\s+[\w() -]{0,60}?"
            r"(?:application|submission|request|filing)\b",
            text,
        )
    ]
    named = bool(out)  # a decision verb whose object is a named action ("granted Fast Track designation") is none
    agent = rf"(?:{REGULATORS})(?:’s|'s)?\s+(?:(?:has|have|had|today|also|officially|formally|now|recently|previously)\s+){{0,2}}"
    if not named:
        out += [m.group(1) for m in re.finditer(rf"\b{agent}({DECISION})\b", text)]
        out += [m.group(1) for m in re.finditer(rf"\b({DECISION})\s+by\s+(?:the\s+)?(?:{REGULATORS})\b", text)]
    bare = re.compile(rf"{ACTION_HEAD}|[A-Z][\w-]*")  # a head alone, or one capitalized word
    return _unique(a for a in out if not bare.fullmatch(a) and not re.fullmatch(ACTION_HEAD, a, re.IGNORECASE))


ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4"}
PHASE = re.compile(
    r"\bphases?[ -]?((?:\d|IV|I{1,3})[ab]?(?: ?(?:/|-|and) ?(?:\d|IV|I{1,3})[ab]?)?)(?![\w/-])", re.IGNORECASE
)


def phases(text: str) -> list[str]:
    """Trial phases as written: "Phase 3", "phase 1/2", "Phase III", "Phase Ib/II"."""
    return _unique(m.group(0) for m in PHASE.finditer(text) if phase_value(m.group(0)))


def phase_value(written: str) -> str | None:
    """The phase in digits: "Phase III" -> "3", "Phase Ib/IIa" -> "1b/2a", "phase 1-2" -> "1/2"."""
    m = PHASE.search(written)
    if m is None:
        return None
    parts = re.split(r" ?(?:/|-|and) ?", m.group(1).lower())
    out = []
    for part in parts:
        num = re.match(r"(\d|iv|i{1,3})([ab]?)$", part)
        if num is None:
            return None
        out.append(ROMAN.get(num.group(1), num.group(1)) + num.group(2))
    return "/".join(out)


TRIAL_WORD = r"(?:trial|study)"
#: words that describe a trial's design: a trial described by them is a record without a name or phase
DESIGN = (
    r"(?:randomi[sz]ed|controlled|(?:double|single|triple)[- ]blind(?:ed)?|placebo[- ]controlled|open[- ]label|"
    r"pivotal|multi-?cent(?:er|re)|multinational|cluster|cross-?over|single[- ]arm|dose[- ](?:escalation|ranging|"
    r"finding)|observational|interventional|prospective|confirmatory|registrational|investigator[- ]initiated|"
    r"non-?inferiority|head[- ]to[- ]head|parallel[- ]group|adaptive|first[- ]in[- ]human|global|international)"
)
#: a trial's name: capitals, digits and hyphens, a number after a space ("TRAILBLAZER-ALZ 2")
TRIAL_NAME = r"(?<![Pp]hase )(?<![\w-])[A-Z][A-Z0-9]+(?:-[A-Z0-9]+)*(?![\w-])(?: \d{1,2}(?![\w.,%-]))?"


def trial_names(text: str) -> list[str]:
    """Names before "trial"/"study" (a few design words between), after a phase, or "called X"."""
    out = [
        m.group(1)
        for m in re.finditer(
            rf"\b({TRIAL_NAME})(?=(?:[ ,]+(?:{DESIGN}|clinical|phase \S+))*[ ,]+(?i:{TRIAL_WORD})\b)", text
        )
        if sum(c.isupper() for c in m.group(1)) >= 3
    ]
    out += [m.group(1) for m in re.finditer(rf"(?i:\bphase \S+) ({TRIAL_NAME})", text) if len(m.group(1)) >= 4]
    out += [m.group(1) for m in re.finditer(r"(?:trial|study) called ([A-Z][\w-]+)", text)]
    return _unique(n for n in out if not PHASE.fullmatch(n) and not re.fullmatch(r"NCT\d+", n))


def trial_mentions(text: str) -> list[str]:
    """Spans that mention one trial: "the Phase 3 TRAILBLAZER-ALZ 2 trial", "the TRAILBLAZER-ALZ 6
    study", "Cluster randomised controlled trial", "an investigator-initiated trial", "A clinical
    trial", "phase 2 clinical development", and a trial record's title ("Study of X in Y")."""
    words = rf"(?:(?:{DESIGN}|clinical|{PHASE.pattern[2:]}|{TRIAL_NAME})[ ,]+(?:and )?)"
    out = [
        m.group(0)
        for m in re.finditer(
            rf"(?i:\bphases?[ -]?\S+)(?:[ ,]+(?:{DESIGN}|clinical|{TRIAL_NAME}))*"
            rf"(?:[ ,]+(?i:{TRIAL_WORD}|development|program(?:me)?))?",
            text,
        )
    ]
    out += [m.group(0) for m in re.finditer(rf"\b{words}*(?:{TRIAL_NAME})[ ,]+{words}*(?i:{TRIAL_WORD})\b", text)]
    out += [m.group(0) for m in re.finditer(rf"(?i:\b(?:{DESIGN})[ ,]+(?:and )?){words}*(?i:{TRIAL_WORD})\b", text)]
    out += [
        m.group(0) for m in re.finditer(r"\b(?:[Aa]n?|[Tt]he) (?:new |first |planned |ongoing )?clinical trial\b", text)
    ]
    return _unique(o for o in out if PHASE.search(o) or re.search(rf"(?i:{TRIAL_WORD})$", o))


def registry_ids(text: str) -> list[str]:
    return _unique(m.group(0) for m in re.finditer(r"\b(?:NCT\d{8}|EudraCT ?\d{4}-\d{6}-\d{2}|ChiCTR\d+)\b", text))


#: verbs of change: the verb is part of the result ("reduced the risk of death by 34%")
CHANGE = (
    r"(?:reduc(?:ed|es|ing)|slow(?:ed|s|ing)|improv(?:ed|es|ing)|increas(?:ed|es|ing)|decreas(?:ed|es|ing)|"
    r"lower(?:ed|s|ing)|rais(?:ed|es|ing)|ris(?:ing|es)|rose|extend(?:ed|s|ing)|prolong(?:ed|s|ing)|"
    r"delay(?:ed|s|ing)|prevent(?:ed|s|ing)|halved|doubled|eliminat(?:ed|es|ing)|maintain(?:ed|s|ing))"
)
#: verbs that present a result: the result is their object ("demonstrated 84.1% VE against ...")
_SHOW_WORDS = [
    *("achieved", "achieves", "showed", "shows", "show", "demonstrated", "demonstrates", "demonstrate"),
    *("confirmed", "confirms", "confirm", "had", "reached", "experienced", "developed", "led_to", "resulted_in"),
    *("produced", "yielded", "reported"),
]
SHOW = "(?:" + "|".join(w.replace("_", " ") for v in _SHOW_WORDS for w in (v, v[0].upper() + v[1:])) + ")"
#: verbs of a passive result clause ("Protection was maintained across ...", "No fever ... was evident")
SEEN = r"(?:observed|reported|seen|noted|evident|maintained|identified|detected|recorded)"
#: the same without "was" (a bullet line: "Long-term protection observed across ...")
SEEN_BARE = r"(?:observed|reported|seen|noted|identified|detected|recorded)"
#: words of a claim that states no result of its own ("Fruzaqla’s effectiveness", "long-term efficacy")
CLAIM_WORDS = re.compile(
    r"(?:[\w-]+['’]s\s+)?(?:(?:long-term|short-term|overall|clinical|its|their)\s+)*"
    r"(?:efficacy|effectiveness|safety|tolerability|benefits?|results?|data|outcomes?|effects?)"
    r"(?:\s+(?:and|of)\s+(?:efficacy|effectiveness|safety|tolerability|benefits?|[A-Z][\w-]*))*",
    re.IGNORECASE,
)
#: where a result's object ends: a clause break, a contrast, or a time phrase (the timepoint's field)
OBJECT_END = (
    r"(?=,\s|\s+(?:while|whereas|which|but|and was|and were)\b|\s+by the\b|"
    r"\s+(?:over|after|at|during|in|for|within|through|up to)\s+(?:\d|one\b|two\b|three\b|four\b|five\b|"
    r"six\b|seven\b|eight\b|nine\b|ten\b|twelve\b|a median\b|approximately\b|about\b|more than\b)|"
    r"\.(?!\d)|[;:\n]|$)"
)
#: a sentence that hopes, plans or supposes states no result
HEDGE = re.compile(
    r"\b(?:will|would|may|might|could|can|should|is thought|are thought|theori[sz]ed|hypothes\w+|expected to|"
    r"aims? to|designed to|to evaluate|to test|to assess|to determine|objective)\b",
    re.IGNORECASE,
)
DISCOURSE = re.compile(
    r"^(?:In [\w ]+ terms|Overall|In summary|In total|Notably|Importantly|However|Finally|Additionally),\s*"
)


#: a word after which an -ing form is a noun or adjective, not a result ("in preventing", "amid rising")
NOT_A_CLAUSE = r"(?<!\bin )(?<!\bof )(?<!\bfor )(?<!\bby )(?<!\bfrom )(?<!\bon )(?<!\bto )(?<!\bamid )(?<!\bthe )"
#: a population after a result ("in individuals with ...", "for patients with ..."): not part of it
POPULATION = r"\s+(?:in|for|among)\s+(?:all\s+)?(?:patients|participants|adults|children|individuals|people|subjects)\b"


def findings(text: str, names: list[str] | None = None) -> list[str]:
    """Reported results: a passive result clause ('Cytokine release syndrome was reported in all
    patients'; its subject alone where nothing follows: 'No fever ... was evident'; without
    'was' only in a bullet line), a verb of change with its object ('significantly slowed
    cognitive and functional decline'), and the object of a verb that presents a result
    ('demonstrated 84.1% VE against ...' gives '84.1% VE against ...'). An object ends at a clause
    break, a contrast, a time phrase or the population; a sentence that hopes, plans or supposes
    gives none."""
    out: list[tuple[int, str]] = []
    end = rf"(?={POPULATION}|{OBJECT_END[3:]}"
    lead = len(text) - len(text.lstrip())
    for clause in re.finditer(r"[\w“\"(](?:[^.;\n]|\.(?=\d))*", text):
        part, base = clause.group(0), clause.start()
        if HEDGE.search(part):
            continue
        # at a line's start (after bullet marks), or after nothing but white space; looked up
        # from the last line break (slicing the whole prefix per clause was quadratic)
        nl = text.rfind("\n", 0, base)
        line_start = base == 0 or (nl >= 0 and not text[nl + 1 : base].strip(" \t•·▪*-")) or base <= lead
        seen = rf"(?:(?:was|were|has been|have been)\s+{SEEN}" + (f"|{SEEN_BARE})" if line_start else ")")
        for m in re.finditer(rf"(?:^|, |: )((?:[Nn]o |[A-Z])[^:]{{3,160}}?)\s+{seen}\b([^;]*)", part):
            rest = m.group(2).strip()
            # a subject of one or two words says little alone ("Protection was maintained across ...")
            short = len(m.group(1).split()) <= 2
            whole = part[m.start(1) :].strip() if short and rest and not rest.startswith(",") else m.group(1)
            out.append((base + m.start(1), DISCOURSE.sub("", whole.strip(" ,"))))
        for m in re.finditer(
            rf"(?<![\w-])((?:[a-z]+ly\s+)?{NOT_A_CLAUSE}(?<!was )(?<!were )(?<!been )(?<!be ){CHANGE}\s+[^,;:]{{2,160}}?){end}",
            part,
        ):
            out.append((base + m.start(1), m.group(1)))
        for m in re.finditer(rf"(?<![\w-])(?<!ly )(?<!was )(?<!were ){SHOW}\s+([^;:]{{3,160}}?){end}", part):
            obj = m.group(1)
            if (
                re.match(r"(?:that|received|been|announced|agreed|the company|using |with |by |to )", obj)
                or obj.isupper()
                or CLAIM_WORDS.fullmatch(re.sub(r"^(?:an?|the)\s+", "", obj))
            ):
                continue
            out.append((base + m.start(1), re.sub(r"^(?:an?|the)\s+", "", obj)))
    names = [re.escape(t) for t in (names if names is not None else therapies(text))]
    of_therapy = re.compile(rf"\s+of\s+(?:{'|'.join(names)})\b.*$") if names else None
    cleaned = [(at, of_therapy.sub("", f) if of_therapy else f) for at, f in sorted(out)]
    return _unique(f for _, f in cleaned if len(f) >= 3 and not CLAIM_WORDS.fullmatch(f))


#: a figure that identifies one result ("61.2%", "84.1", "34%")
FIGURE = re.compile(r"\d+(?:\.\d+)?%|\d+\.\d+")


def restates(later: str, earlier: str) -> bool:
    """Does ``later`` report the result ``earlier`` did: a figure of it, or nearly the same words?"""
    if set(FIGURE.findall(later)) & set(FIGURE.findall(earlier)):
        return True
    return fuzz.token_set_ratio(later.casefold(), earlier.casefold()) >= 85


@lru_cache(maxsize=16)
def _document_findings(document: str) -> tuple[tuple[int, str], ...]:
    found = []
    locate = Locator(document)  # findings come in document order
    for f in findings(document, _therapy_names(document)):
        at = locate(f)
        found.append((at if at >= 0 else len(document), f))
    return tuple(sorted(found))


#: how far back a finding looks for an earlier sentence that reported the same result (a
#: summary and the body of one article); comparing with every earlier finding was quadratic
RESTATED_WITHIN = 50_000


@lru_cache(maxsize=16)
def _therapy_names(document: str) -> list[str]:
    """The document's therapy names (read once per document: per sentence, it was quadratic)."""
    return [*therapies(document), *therapy_appositions(document).learned]


def findings_in(document: str) -> Finder:
    """A unit's findings, less those that restate a result an earlier sentence of the document
    reported (a summary bullet and the body give one result, not two)."""
    earlier = _document_findings(document)
    starts = [p for p, _ in earlier]
    locate = Locator(document)

    def find(unit: str) -> list[str]:
        at = locate(unit)
        base = at if at >= 0 else len(document)
        before = earlier[bisect_left(starts, base - RESTATED_WITHIN) : bisect_left(starts, base)]
        kept = []
        for f in findings(unit, _therapy_names(document)):
            if not any(e != f and restates(f, e) for _, e in before):
                kept.append(f)
        return kept

    return find


def timepoints(text: str) -> list[str]:
    return _unique(
        m.group(0)
        for m in re.finditer(r"(?:[+-]?\d+(?:\.\d+)? ?(?:to [+-]?\d+ )?(?:days?|weeks?|months?|years?)\b)", text)
    )


FUNDING_CUE = re.compile(r"\b(?:fund(?:ed|ing|s)?|grants?|supported (?:in part )?by|financial support)\b", re.I)


def funders(text: str) -> list[str]:
    """Organizations after "by"/"from" in a funding statement (the text must say funded, grant, supported by...)."""
    if not FUNDING_CUE.search(text):
        return []
    return _unique(
        m.group(1)
        for m in re.finditer(
            rf"(?:by|from) (?:the )?((?:{CAP})(?: (?:{CONNECT} )?{CAP}){{0,6}})(?= \(|,|\.| and| from)", text
        )
    )


def grant_ids(text: str) -> list[str]:
    return _unique(m.group(1) for m in re.finditer(r"\(([A-Z][A-Z0-9_/.-]*\d[A-Z0-9_/.-]*|[A-Z]{2,}_[A-Z_]+)\)", text))


#: a numbered line of a reference list: it states a year (a numbered author or affiliation list does not)
REFERENCE_LINE = re.compile(r"^\s*\d{1,3}\.\s+(.*\b(?:1[89]|20)\d\d\b.*)$", re.MULTILINE)
AUTHORS = re.compile(r"^(?:[A-Z][\w'’-]+ [A-Z]{1,3}[.,]\s*(?:and\s+)?)+(?:et al\.\s*)?")


def citation_titles(text: str) -> list[str]:
    """Title of a numbered reference line: authors ('Shapiro SC.') dropped, up to the first
    sentence end or a bracketed note ('[news release]')."""
    out = []
    for m in REFERENCE_LINE.finditer(text):
        body = AUTHORS.sub("", m.group(1).strip())
        t = re.match(r"(.+?(?:[?!](?=\s)|(?=\s\[|\.\s|\.?$)))", body)
        if t:
            out.append(t.group(1).strip())
    return _unique(out)


def citation_sources(text: str) -> list[str]:
    out = []
    for m in REFERENCE_LINE.finditer(text):
        parts = [p.strip() for p in re.split(r"(?<=[.?\]])\s+", m.group(1)) if p.strip()]
        out += [p.rstrip(".") for p in parts[1:] if re.match(r"^[A-Z]", p) and not re.match(r"^\d", p)]
    return _unique(out)


def sources(text: str) -> list[str]:
    """Journal or site names: 'X et al. <Journal>.' and 'The <Name>' publications."""
    out = [m.group(1) for m in re.finditer(r"et al\. ([A-Z][\w .&-]{1,60}?)\.", text)]
    out += [m.group(0) for m in re.finditer(r"\bThe [A-Z][a-z]+(?:ologist|ist|Journal|Times|News|Post|Lancet)\b", text)]
    return _unique(out)


_FINDERS: dict[str, Finder] = {
    "condition": conditions,
    "abbreviation": abbreviations,
    "therapy": therapies,
    "target": targets,
    "person": people,
    "credentials": credentials,
    "organization": organizations,
    "agency": agencies,
    "action": actions,
    "phase": phases,
    "trial_mention": trial_mentions,
    "trial_name": trial_names,
    "registry_id": registry_ids,
    "finding": findings,
    "timepoint": timepoints,
    "funder": funders,
    "grant_id": grant_ids,
    "citation_title": citation_titles,
    "citation_source": citation_sources,
    "source": sources,
}
#: values that must follow the record's primary value directly ("(CRS)", "(PI22/01226)", ", MD")
_ADJACENT = {"abbreviation", "grant_id", "credentials"}
#: therapy class phrases ("CAR T cells") give way to product names (spec: a class phrase is the
#: therapy's name only "when no product is named")
_CLASS = {"therapy": is_generic_therapy}


@lru_cache(maxsize=16)
def therapy_appositions(document: str) -> apposition.Appositions:
    """Brand names and codes the document gives in apposition to a therapy ("Fruzaqla
    (fruquintinib)", "donanemab, marketed as Kisunla", "the dengue vaccine, Qdenga")."""
    orgs = {o.casefold() for o in organizations(document)}
    return apposition.read(
        document,
        therapies,
        learn=True,
        is_class=is_generic_therapy,
        common=vocab.sources.common_words(),
        excluded=lambda name: name.casefold() in orgs or bool(re.fullmatch(rf"{ORG_HEADS}", name)),
    )


@lru_cache(maxsize=16)
def condition_appositions(document: str) -> apposition.Appositions:
    """Second names of a condition in parentheses ("hemophilia B (congenital Factor IX deficiency)")."""
    return apposition.read(document, conditions, learn=False)


def _aliases(read: Callable[[str], apposition.Appositions]) -> Callable[[str], dict[str, str]]:
    def aliases(document: str) -> dict[str, str]:
        found = read(document)
        return {alias: found.canonical(name) for alias, name in found.aliases.items()}

    return aliases


#: kinds whose spans stand for another value
_VALUE = {"phase": phase_value}


@lru_cache(maxsize=16)
def _drugs_and_diseases(document: str) -> list[str]:
    return [*therapies(document), *therapy_appositions(document).learned, *vocab.diseases(document)]


_TAGGED_ORGANIZATIONS, _TAGGED_PEOPLE = tagger.finders(_drugs_and_diseases)


@lru_cache(maxsize=16)
def _not_names(document: str) -> tuple[list[str], list[str]]:
    """(therapy names, other spans that name no organization or person: trial names, actions,
    credentials) of the document."""
    drugs = [*therapies(document), *therapy_appositions(document).learned]
    return drugs, [*trial_names(document), *credentials(document)]


def _with_tagged(regex: Finder, tagged: Callable[[str], Finder]) -> Callable[[str], Finder]:
    """Per document: the regex names of a unit and the tagger's names inside it, in text order,
    less names that hold a therapy name ("Effects of Navarixin") or lie inside a trial name,
    a regulatory action or credentials ("Fast Track" of "Fast Track designation")."""

    def per_document(document: str) -> Finder:
        names = tagged(document)
        drugs, others = _not_names(document)
        drug_words = [re.compile(rf"(?<![\w-]){re.escape(d)}(?![\w-])", re.IGNORECASE) for d in drugs]
        inside = [o.casefold() for o in others]
        # a name that is an action less its head word ("Fast Track" of "Fast Track designation")
        named_actions = [a.casefold() for a in actions(document)]

        def ok(name: str) -> bool:
            folded = name.casefold()
            return (
                not any(p.search(name) for p in drug_words)
                and not any(folded in o for o in inside)
                and not any(a.startswith(folded + " ") and " " not in a[len(folded) + 1 :] for a in named_actions)
            )

        def find(unit: str) -> list[str]:
            found = [n for n in in_text_order(unit, regex(unit), names(unit)) if ok(n)]
            return [n for n in found if not _subunit(n, unit, found)]

        return find

    return per_document


#: a department, unit or service named before its parent institution ("School of Public Health,
#: Imperial College London"): the institution is the organization
SUBUNIT = re.compile(
    r"^(?:Department|Dept\.?|Division|Unit|Section|Faculty|School|Cent(?:er|re)|Laborator(?:y|ies)|Service|"
    r"Program(?:me)?|Institute)\s+(?:of|for)\s|\b(?:Department|Division|Unit|Service|Section)$"
)


def _subunit(name: str, text: str, names: list[str]) -> bool:
    if not SUBUNIT.search(name):
        return False
    at = text.find(name)
    after = text[at + len(name) : at + len(name) + 160] if at >= 0 else ""
    return any(after.startswith(", " + other) for other in names if other != name)


#: company suffixes: "Kyverna" is "Kyverna Therapeutics", "Cytokinetics" is "Cytokinetics, Incorporated"
COMPANY_SUFFIX = re.compile(
    r"(?:,? (?:Inc\.?|Incorporated|Ltd\.?|Limited|LLC|Corp\.?|Corporation|Co\.|GmbH|AG|plc|S\.A\.|N\.V\.|"
    r"Therapeutics|Pharmaceuticals?|Pharma|Biotechnology|Biosciences|Biotherapeutics|Biopharma|Bio|Holdings|"
    r"Group|Company))+"
)


#: a country or region abbreviation before an organization's name ("US FDA", "U.S. FDA")
QUALIFIER = re.compile(r"[A-Z]{2,3}|(?:[A-Z]\.){2,3}")


@lru_cache(maxsize=16)
def organization_aliases(document: str) -> dict[str, str]:
    """A short name that is a longer organization name without its company suffix, and a name
    given in parentheses after an organization's name ("... Human Use (CHMP)"): the same organization."""
    finder = _DOCUMENT["organization"](document)
    names = finder(document)
    out = dict(apposition.read(document, finder, learn=False).aliases)
    for long in names:
        for short in names:
            if len(short) < len(long) and long.startswith(short) and COMPANY_SUFFIX.fullmatch(long[len(short) :]):
                out.setdefault(short.casefold(), long)
            elif len(short) < len(long) and long.endswith(" " + short) and QUALIFIER.fullmatch(long[: -len(short) - 1]):
                out.setdefault(long.casefold(), short)  # "US FDA" is the FDA
    return out


#: kinds that learn names from the document and know which names are one thing
_DOCUMENT = {
    "therapy": (lambda document: apposition.finder(therapies, therapy_appositions(document).learned)),
    "organization": _with_tagged(organizations, _TAGGED_ORGANIZATIONS),
    "person": _with_tagged(people, _TAGGED_PEOPLE),
    "finding": findings_in,
}
_ALIASES: dict[str, Callable[[str], dict[str, str]]] = {
    "therapy": _aliases(therapy_appositions),
    "condition": _aliases(condition_appositions),
    "organization": organization_aliases,
}

KINDS: dict[str, CandidateKind] = {
    kind: CandidateKind(
        find=finder,
        adjacent=kind in _ADJACENT,
        is_class=_CLASS.get(kind),
        in_document=_DOCUMENT.get(kind),
        value=_VALUE.get(kind),
        aliases=_ALIASES.get(kind),
    )
    for kind, finder in _FINDERS.items()
}
