"""Built-in text-classification tasks, generated offline and deterministically from a seed.

The machine probekit runs on may have no internet, so the default data is made here:
four labelled tasks that mirror the GLUE tasks of Hao et al. (2020):

* ``sentiment``  - single-sentence review sentiment, 2 classes (like SST-2)
* ``paraphrase`` - news sentence pairs, is one a paraphrase of the other (like MRPC)
* ``entailment`` - news-style premise/hypothesis pairs, 2 classes (like RTE)
* ``nli``        - everyday scenes and dialogue, 3 classes (like MNLI)

Every example is composed from structured "frames" (who did what, where, when, how
many) realised through many templates and synonym lists, so texts read like real
English and the label follows from the meaning rather than from a single keyword:
sentiment uses negation, "but"/"although" contrast and expectation reversals;
paraphrase negatives change one number, name or role while sharing most words;
entailment and nli negatives overlap lexically with the premise.

A fixed fraction of labels (:data:`NOISE_RATE`, 6 %) is flipped to another class,
chosen deterministically from the seed, so no model can reach 100 % accuracy.

Same ``(task, split, seed)`` -> identical examples, in every process: all randomness
comes from :class:`random.Random` seeded by a SHA-256 digest of those three values
(never Python's salted ``hash()``).  Validation examples whose text occurs in the
training split of the same seed are skipped, so the two splits never overlap.

See ``docs/tasks.md`` for how each task is built and example lines.
"""
from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Callable

from probekit import Example, did_you_mean

__all__ = ["NOISE_RATE", "TASKS", "TaskInfo", "load_task"]

#: Fraction of examples in every split whose label is flipped to another class.
NOISE_RATE = 0.06

_SIZES = {"train": 5000, "validation": 1000}


@dataclass(frozen=True)
class TaskInfo:
    """What a built-in task is: its name, a one-line description, labels and split sizes."""

    name: str
    description: str
    labels: tuple[str, ...]
    pair: bool
    sizes: dict[str, int] = field(default_factory=lambda: dict(_SIZES))


# --------------------------------------------------------------------------- helpers

_Rng = random.Random


def _derive_seed(*parts: object) -> int:
    """A stable 64-bit integer from ``parts`` (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _sentence(text: str) -> str:
    """Tidy spacing, capitalise the first letter and end with a full stop."""
    text = " ".join(text.split())
    text = text.replace(" ,", ",").replace(" .", ".").replace(" ;", ";")
    text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        text += "."
    return text


def _poss(name: str) -> str:
    """The possessive form of a name ("Harbor Bank's", "Cobalt Networks'")."""
    return name + ("'" if name.endswith("s") else "'s")


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _a(word: str) -> str:
    """The indefinite article for ``word``."""
    low = word.lower()
    if low.startswith(("one", "uni", "use", "eu")):
        return "a"
    if low.startswith(("hour", "honest")):
        return "an"
    return "an" if low[:1] in "aeiou" else "a"


def _with_a(phrase: str) -> str:
    return f"{_a(phrase)} {phrase}"


_SINGULAR_S = ("news", "bass", "series", "physics", "mathematics", "economics", "chess", "gas")


def _plural(noun: str) -> bool:
    last = noun.split()[-1]
    return last.endswith("s") and not last.endswith("ss") and last not in _SINGULAR_S


_NUM_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
              "eleven", "twelve")


def _num(r: _Rng, n: int) -> str:
    """A count as words (for small numbers, sometimes) or digits."""
    if n < len(_NUM_WORDS) and r.random() < 0.6:
        return _NUM_WORDS[n]
    return f"{n:,}"


def _other(r: _Rng, options, current):
    """A random element of ``options`` different from ``current``."""
    choices = [option for option in options if option != current]
    return r.choice(choices)


# Shared name lists (persons, places, organisations, days).
_FIRST_F = ("Maria", "Sarah", "Elena", "Priya", "Grace", "Ana", "Fatima", "Laura", "Olivia", "Sofia",
            "Hannah", "Chloe", "Amara", "Ingrid", "Yuki", "Leila", "Rachel", "Nadia", "Claire", "Monica",
            "Julia", "Rosa", "Mei", "Aisha", "Emma", "Lucy", "Helen", "Irene", "Naomi", "Beatriz")
_FIRST_M = ("John", "David", "Ahmed", "Robert", "Thomas", "Michael", "James", "Peter", "Kenji", "Daniel",
            "Marcus", "Ivan", "Samuel", "Omar", "Carlos", "Luis", "Raj", "Tom", "Ben", "Victor",
            "Hugo", "Felix", "Anton", "George", "Martin", "Paul", "Simon", "Kwame", "Diego", "Andrew")
_LAST = ("Smith", "Garcia", "Chen", "Patel", "Johnson", "Kowalski", "Okafor", "Rossi", "Nguyen", "Brown",
         "Silva", "Andersson", "Tanaka", "Dubois", "Murphy", "Haddad", "Novak", "Walsh", "Khan", "Reyes",
         "Fischer", "Larsen", "Moreno", "Bennett", "Costa", "Ivanova", "Mensah", "O'Brien", "Schmidt",
         "Yilmaz", "Kim", "Alvarez", "Harper", "Lindqvist", "Adeyemi", "Marsh", "Romano", "Sato")
_CITIES = ("Chicago", "Boston", "Denver", "Seattle", "Atlanta", "Houston", "London", "Manchester", "Dublin",
           "Sydney", "Toronto", "Madrid", "Berlin", "Paris", "Rome", "Tokyo", "Mumbai", "Lagos", "Nairobi",
           "Lisbon", "Oslo", "Vienna", "Prague", "Warsaw", "Cairo", "Lima", "Bogota", "Melbourne",
           "Auckland", "Vancouver", "Glasgow", "Hamburg", "Milan", "Osaka", "Seoul", "Accra", "Cape Town",
           "Montreal", "Phoenix", "Detroit", "Rotterdam", "Geneva", "Marseille", "Porto", "Krakow")
_COUNTRIES = ("Canada", "Brazil", "Kenya", "Norway", "Portugal", "Japan", "India", "Mexico", "Poland",
              "Ireland", "Chile", "Egypt", "Ghana", "Spain", "Italy", "Sweden", "Turkey", "Vietnam",
              "Peru", "Austria", "Greece", "Nigeria", "Argentina", "Denmark", "Colombia", "Morocco")
_COMPANIES = ("Northwind Systems", "Harbor Bank", "Crestline Motors", "Apex Pharma", "Bluewater Energy",
              "Summit Telecom", "Ironwood Steel", "Greenfield Foods", "Silverline Airlines",
              "Orion Software", "Redstone Mining", "Lakeside Insurance", "Pinecrest Retail",
              "Meridian Health", "Vantage Media", "Atlas Logistics", "Granite Capital",
              "Horizon Chemicals", "Beacon Semiconductors", "Cobalt Networks", "Riverside Textiles",
              "Falcon Aerospace", "Evergreen Utilities", "Sterling Hotels", "Nova Robotics",
              "Keystone Foods", "Polar Shipping", "Copperfield Brewing", "Whitestone Media", "Quantum Dynamics")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


def _person(r: _Rng) -> tuple[str, str]:
    """A full name and its pronoun ("he"/"she")."""
    if r.random() < 0.5:
        return f"{r.choice(_FIRST_F)} {r.choice(_LAST)}", "she"
    return f"{r.choice(_FIRST_M)} {r.choice(_LAST)}", "he"


# =========================================================================== sentiment

@dataclass(frozen=True)
class _Domain:
    items: tuple[str, ...]
    aspects: tuple[str, ...]
    context: tuple[str, ...]      # "We watched this {item} {when}"
    again: tuple[str, ...]        # "I would {again}"


_DOMAINS = (
    _Domain(
        items=("film", "movie", "thriller", "comedy", "drama", "documentary", "sequel", "romantic comedy",
               "horror film", "animated film", "war film", "remake"),
        aspects=("plot", "acting", "script", "dialogue", "soundtrack", "pacing", "ending", "cinematography",
                 "lead performance", "supporting cast", "direction", "score", "special effects", "humour",
                 "story", "editing", "final act", "opening scene", "costumes", "camera work", "villain",
                 "twist", "characters", "jokes", "battle scenes", "running time"),
        context=("we watched this {item} {when}", "I saw this {item} {when}", "I caught this {item} {when}",
                 "my partner and I rented this {item} {when}"),
        again=("watch it again", "see it a second time", "recommend it to my friends"),
    ),
    _Domain(
        items=("restaurant", "bistro", "cafe", "diner", "pizzeria", "steakhouse", "noodle bar", "bakery",
               "tapas bar", "sushi place", "food truck", "brasserie"),
        aspects=("food", "service", "pasta", "desserts", "staff", "atmosphere", "wine list", "portions",
                 "coffee", "menu", "soup", "decor", "bread", "seafood", "waiter", "cocktails", "breakfast",
                 "terrace", "curry", "burgers", "pizza", "prices", "music", "steak", "salad", "bill"),
        context=("we had dinner at this {item} {when}", "we tried this {item} {when}",
                 "I took my parents to this {item} {when}", "we stopped at this {item} {when}"),
        again=("go back", "eat there again", "book a table there again"),
    ),
    _Domain(
        items=("hotel", "inn", "resort", "guesthouse", "hostel", "bed and breakfast", "lodge", "motel",
               "holiday apartment", "campsite"),
        aspects=("room", "bed", "staff", "breakfast", "view", "location", "pool", "shower", "reception",
                 "wifi", "spa", "balcony", "cleaning", "check-in", "gym", "towels", "parking", "bathroom",
                 "air conditioning", "neighbourhood"),
        context=("we stayed at this {item} {when}", "I booked this {item} {when}",
                 "we spent three nights at this {item} {when}", "my family stayed at this {item} {when}"),
        again=("stay there again", "book it again", "return"),
    ),
    _Domain(
        items=("novel", "book", "memoir", "biography", "short story collection", "crime novel",
               "fantasy novel", "cookbook", "travel guide", "graphic novel"),
        aspects=("writing", "prose", "characters", "plot", "ending", "opening chapter", "dialogue",
                 "translation", "illustrations", "pacing", "main character", "narrator", "final chapters",
                 "research", "recipes", "world building", "style", "cover", "middle section"),
        context=("I read this {item} {when}", "I picked up this {item} {when}",
                 "our book club chose this {item} {when}", "I finished this {item} {when}"),
        again=("read it again", "lend it to a friend", "read more by this author"),
    ),
    _Domain(
        items=("phone", "laptop", "blender", "vacuum cleaner", "headset", "camera", "coffee machine",
               "backpack", "keyboard", "printer", "speaker", "smartwatch", "tablet", "kettle", "monitor",
               "electric toothbrush", "router"),
        aspects=("battery", "screen", "design", "build quality", "sound", "price", "software", "instructions",
                 "customer support", "packaging", "charger", "buttons", "setup", "delivery", "app",
                 "display", "speakers", "materials", "warranty", "noise level"),
        context=("I bought this {item} {when}", "I ordered this {item} {when}",
                 "my brother gave me this {item} {when}", "I have been using this {item} since {when}"),
        again=("buy it again", "order another one", "recommend it to anyone"),
    ),
    _Domain(
        items=("concert", "show", "gig", "performance", "festival", "musical", "play", "opera",
               "comedy show", "ballet"),
        aspects=("band", "singer", "sound", "venue", "setlist", "lighting", "crowd", "encore", "orchestra",
                 "opening act", "seats", "tickets", "choreography", "costumes", "stage design", "drummer",
                 "second half", "lead actor"),
        context=("we went to this {item} {when}", "I saw this {item} {when}",
                 "my sister and I attended this {item} {when}", "we got tickets for this {item} {when}"),
        again=("see it again", "go again next year", "buy tickets again"),
    ),
    _Domain(
        items=("game", "video game", "board game", "puzzle game", "racing game", "strategy game",
               "role-playing game", "mobile game"),
        aspects=("graphics", "controls", "story", "multiplayer", "levels", "music", "difficulty", "tutorial",
                 "boss fights", "open world", "characters", "loading times", "puzzles", "rules",
                 "voice acting", "campaign", "price", "artwork"),
        context=("I played this {item} {when}", "we tried this {item} {when}",
                 "my kids and I played this {item} {when}", "I downloaded this {item} {when}"),
        again=("play it again", "buy the sequel", "recommend it"),
    ),
)

_WHEN = ("last night", "last weekend", "on Saturday", "over the holidays", "for my birthday", "a few weeks ago",
         "after reading the reviews", "with a few friends", "on a friend's recommendation",
         "during a work trip", "on a rainy Sunday", "last month", "on our anniversary", "last summer")

_POS_ADJ = ("superb", "wonderful", "brilliant", "excellent", "delightful", "charming", "fantastic", "terrific",
            "impressive", "outstanding", "lovely", "gorgeous", "engaging", "gripping", "stunning",
            "memorable", "clever", "polished", "flawless", "solid", "great", "fresh", "inventive", "warm",
            "thoughtful", "beautiful", "remarkable", "enjoyable", "satisfying", "pleasant", "elegant",
            "good", "fun", "moving", "smart", "generous", "marvellous", "first-rate", "spot on", "strong")
_NEG_ADJ = ("dull", "awful", "terrible", "bland", "tedious", "disappointing", "clumsy", "forgettable",
            "mediocre", "weak", "boring", "sloppy", "flat", "poor", "dreadful", "lifeless", "messy",
            "uninspired", "lazy", "painful", "tiresome", "shoddy", "frustrating", "underwhelming", "cheap",
            "stale", "confusing", "irritating", "horrible", "bad", "lacklustre", "clunky", "overrated",
            "predictable", "forced", "amateurish", "annoying", "second-rate", "cold", "noisy")
_NEG_MILD = ("dull", "bland", "flat", "weak", "predictable", "messy", "clunky", "forgettable", "stale",
             "uneven", "slow", "disappointing", "underwhelming", "noisy", "cold")
_NOT_BAD = ("bad", "boring", "dull", "terrible", "disappointing", "awful", "weak", "bland", "tedious",
            "forgettable")
_INTENS = ("", "", "", "", "very", "really", "truly", "absolutely", "genuinely", "quite", "remarkably",
           "thoroughly", "incredibly", "pretty", "so", "surprisingly", "consistently", "just")
_INTENS_NEG = _INTENS + ("downright", "utterly", "painfully")
_SOFT = ("a bit", "a little", "slightly", "somewhat", "rather", "a touch")
_COP_SG = ("was", "was", "was", "felt", "seemed", "turned out to be", "proved", "is")
_COP_PL = ("were", "were", "were", "felt", "seemed", "turned out to be", "proved", "are")
_POS_VERB = ("loved", "enjoyed", "adored", "appreciated", "really liked", "admired", "was impressed by",
             "was blown away by", "fell in love with", "could not get enough of", "was charmed by",
             "was delighted by", "thoroughly enjoyed")
_NEG_VERB = ("hated", "disliked", "could not stand", "was annoyed by", "was disappointed by",
             "was bored by", "got tired of", "was let down by", "could barely tolerate", "regretted",
             "was irritated by", "was frustrated by")
_POS_IDIOM = ("exceeded my expectations", "made the whole {item} worthwhile", "was worth every penny",
              "deserves every bit of praise", "could not have been better", "was a real highlight",
              "stole the show", "won me over", "blew me away", "was a pleasant surprise",
              "was the best part of the {item}")
_NEG_IDIOM = ("fell short of my expectations", "left a lot to be desired", "was a complete letdown",
              "could not have been worse", "ruined the whole {item} for me", "was a waste of money",
              "felt like an afterthought", "was a real disappointment", "let the whole {item} down",
              "was the worst part of the {item}", "put me off completely")
_OPENERS = ("honestly,", "to be honest,", "frankly,", "in my opinion,", "I have to say", "overall,",
            "all in all,", "I think", "if I am honest,", "to be fair,", "in the end,", "believe me,")
_AUDIENCE = ("anyone", "my friends", "families", "first-time visitors", "fans of the genre", "beginners",
             "anyone on a budget", "my worst enemy", "people in a hurry", "a friend")


def _words(text: str) -> str:
    """Collapse runs of spaces and remove spaces before punctuation."""
    text = " ".join(text.split())
    for mark in (",", ":", ";", "."):
        text = text.replace(" " + mark, mark)
    return text


def _s_clause(r: _Rng, dom: _Domain, item: str, pos: bool, aspect: str | None = None) -> str:
    """One evaluative clause about an aspect, with polarity ``pos``."""
    a = aspect or r.choice(dom.aspects)
    cop = r.choice(_COP_PL if _plural(a) else _COP_SG)
    be = "were" if _plural(a) else "was"
    adj = r.choice(_POS_ADJ if pos else _NEG_ADJ)
    opp = r.choice(_NEG_ADJ if pos else _POS_ADJ)
    k = r.random()
    if k < 0.30:
        return _words(f"the {a} {cop} {r.choice(_INTENS if pos else _INTENS_NEG)} {adj}")
    if k < 0.38:
        adj2 = _other(r, _POS_ADJ if pos else _NEG_ADJ, adj)
        return f"the {a} {cop} {adj} and {adj2}"
    if k < 0.52:  # negated opposite
        if pos:
            form = r.choice((f"not {r.choice(_NOT_BAD)} at all", f"never {r.choice(_NOT_BAD)}",
                             f"anything but {opp}", f"far from {opp}", f"not {r.choice(_NOT_BAD)}",
                             f"not nearly as {r.choice(_NOT_BAD)} as people say"))
        else:
            form = r.choice((f"not {r.choice(('very', 'particularly', 'especially', ''))} {opp}",
                             f"anything but {opp}", f"far from {opp}", f"hardly {opp}",
                             f"not as {opp} as I had hoped", f"never really {opp}"))
        return _words(f"the {a} {be} {form}")
    if k < 0.64:
        return f"I {r.choice(_POS_VERB if pos else _NEG_VERB)} the {a}"
    if k < 0.76:
        if pos:
            return r.choice((f"I could not fault the {a}", f"I have no complaints about the {a}",
                             f"I never got bored of the {a}", f"nobody could call the {a} {opp}",
                             f"there was nothing {opp} about the {a}", f"I did not hate the {a} at all; I loved it",
                             f"I cannot say a bad word about the {a}"))
        return r.choice((f"I did not {r.choice(('enjoy', 'like', 'care for', 'warm to'))} the {a}",
                         f"I struggled to find anything {opp} about the {a}", f"nobody could call the {a} {opp}",
                         f"there was nothing {opp} about the {a}", f"I cannot say I enjoyed the {a}",
                         f"I did not love the {a}, to put it mildly"))
    if k < 0.88:
        return f"the {a} " + r.choice(_POS_IDIOM if pos else _NEG_IDIOM).format(item=item)
    if k < 0.94:
        comp = r.choice(("better", "much better", "far better", "a lot better") if pos
                        else ("worse", "much worse", "far worse", "a lot worse"))
        than = r.choice(("than I expected", "than the reviews suggested", "than last time",
                         "than I remembered", "than in most places"))
        return f"the {a} {be} {comp} {than}"
    intens = r.choice(("how", "just how"))
    return f"I cannot believe {intens} {adj} the {a} {be}"


def _gen_sentiment(r: _Rng, label: str) -> tuple[str, None]:
    pos = label == "positive"
    dom = r.choice(_DOMAINS)
    item = r.choice(dom.items)
    a1, a2 = r.sample(dom.aspects, 2)
    k = r.random()
    closer = ""
    if k < 0.20:  # plain
        text = _s_clause(r, dom, item, pos, a1)
        if r.random() < 0.35:
            text += r.choice((", and ", " and ", "; ", ", and also ")) + _s_clause(r, dom, item, pos, a2)
    elif k < 0.40:  # X, but Y  -> label of Y
        conj = r.choice((", but ", ", but ", ", but honestly ", "; however, ", ", yet ", ", but in the end ",
                         ", but then again ", ". That said, ", ". Still, "))
        text = _s_clause(r, dom, item, not pos, a1) + conj + _s_clause(r, dom, item, pos, a2)
    elif k < 0.52:  # although X, Y -> label of Y
        sub = r.choice(("although", "even though", "while", "though", "granted,"))
        text = f"{sub} {_s_clause(r, dom, item, not pos, a1)}, {_s_clause(r, dom, item, pos, a2)}"
    elif k < 0.60:  # despite
        opp = r.choice(_NEG_ADJ if pos else _POS_ADJ)
        adj = r.choice(_POS_ADJ if pos else _NEG_ADJ)
        form = r.random()
        if form < 0.5:
            text = f"despite the {opp} {a1}, {_s_clause(r, dom, item, pos, a2)}"
        elif form < 0.8:
            text = f"for all its {opp} {a1}, the {item} was {r.choice(_INTENS)} {adj} overall"
        else:
            text = f"even with the {opp} {a1}, this {item} was {adj}"
    elif k < 0.70:  # expectation reversal
        if pos:
            text = r.choice((
                f"I expected this {item} to be {r.choice(_NEG_ADJ)}, but it turned out to be {r.choice(_INTENS)} {r.choice(_POS_ADJ)}",
                f"the reviews made this {item} sound {r.choice(_NEG_ADJ)}, but I found it {r.choice(_POS_ADJ)}",
                f"I went in with low expectations, and {_s_clause(r, dom, item, True, a1)}",
                f"my friends warned me the {a1} would be {r.choice(_NEG_ADJ)}, but {_s_clause(r, dom, item, True, a1)}",
                f"I was ready to hate this {item}, but {_s_clause(r, dom, item, True, a1)}",
                f"I did not expect much from this {item}, yet {_s_clause(r, dom, item, True, a1)}",
            ))
        else:
            text = r.choice((
                f"I expected {_with_a(r.choice(_POS_ADJ) + ' ' + item)}, but {_s_clause(r, dom, item, False, a1)}",
                f"everyone said this {item} was {r.choice(_POS_ADJ)}, but I found it {r.choice(_NEG_ADJ)}",
                f"I had high hopes for this {item}, but {_s_clause(r, dom, item, False, a1)}",
                f"on paper this {item} should have been {r.choice(_POS_ADJ)}, but {_s_clause(r, dom, item, False, a1)}",
                f"the trailer promised something {r.choice(_POS_ADJ)}, but {_s_clause(r, dom, item, False, a1)}",
                f"I really wanted to love this {item}, but {_s_clause(r, dom, item, False, a1)}",
            ))
    elif k < 0.80:  # "the only good thing" / "my only complaint"
        if pos:
            text = r.choice((
                f"my only complaint is that the {a1} {'were' if _plural(a1) else 'was'} {r.choice(_SOFT)} {r.choice(_NEG_MILD)}",
                f"apart from the {r.choice(_NEG_MILD)} {a1}, {_s_clause(r, dom, item, True, a2)}",
                f"the {a1} could have been better, but that is my only complaint about this {r.choice(_POS_ADJ)} {item}",
                f"if I had to find one weak point it would be the {a1}, but {_s_clause(r, dom, item, True, a2)}",
            ))
        else:
            text = r.choice((
                f"the only {r.choice(('good', 'decent', 'redeeming', 'bearable', 'positive'))} thing about this {item} was the {a1}",
                f"apart from the {r.choice(_POS_ADJ)} {a1}, there was nothing to enjoy in this {item}",
                f"the {a1} was fine, but that is the only nice thing I can say about this {item}",
                f"the {a1} was {r.choice(_POS_ADJ)}, but it could not save this {r.choice(_NEG_ADJ)} {item}",
            ))
    elif k < 0.90:  # about the whole item, recommendations
        adj = r.choice(_POS_ADJ if pos else _NEG_ADJ)
        form = r.random()
        if form < 0.35:
            text = _words(f"this {item} was {r.choice(_INTENS)} {adj}")
        elif form < 0.6:
            adj2 = r.choice(_POS_ADJ if pos else _NEG_ADJ)
            text = f"what {_with_a(adj + ' ' + item)}: the {a1} {'were' if _plural(a1) else 'was'} {adj2}"
        elif form < 0.8:
            verb = "would" if pos else r.choice(("would not", "would never", "could not"))
            text = f"I {verb} recommend this {item} to {r.choice(_AUDIENCE[:-2] if not pos else _AUDIENCE)}"
            if not pos and "enemy" in text:
                text = f"I would not recommend this {item} to anyone"
            if pos and "enemy" in text:
                text = f"I would recommend this {item} to anyone"
        else:
            again = r.choice(dom.again)
            text = (f"I would {r.choice(('happily', 'gladly', 'definitely', ''))} {again}" if pos
                    else f"I will {r.choice(('never', 'not', 'certainly not'))} {again}")
        if r.random() < 0.5:
            text += r.choice((", because ", " since ", "; ")) + _s_clause(r, dom, item, pos, a2)
    else:  # narrative context + clause
        ctx = r.choice(dom.context).format(item=item, when=r.choice(_WHEN))
        text = f"{ctx}, and {_s_clause(r, dom, item, pos, a1)}"
    if r.random() < 0.15 and k < 0.9:
        text = f"{r.choice(_OPENERS)} {text}"
    if r.random() < 0.10:
        closer = (r.choice((" - highly recommended", ", five stars", ", and I will be back", ", a real gem"))
                  if pos else r.choice((" - avoid", ", one star", ", and I will not be back", ", what a shame")))
    return _sentence(_words(text + closer)), None


# =========================================================================== paraphrase

def _day(r: _Rng) -> str:
    return r.choice(_WEEKDAYS)


class _Family:
    """A kind of news event for ``paraphrase``.

    A frame is a dict of facts plus ``changes``, the frozenset of fields a perturbation
    altered (empty for a sampled frame). ``realize(r, frame, t, detail)`` writes the
    frame with template ``t`` (0 <= t < templates); ``detail=False`` omits an optional
    detail (a reason, a deadline, a scorer), which is always kept once it was changed.
    """

    templates = 1

    def sample(self, r: _Rng) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def perturb(self, r: _Rng, f: dict) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def realize(self, r: _Rng, f: dict, t: int, detail: bool) -> str:  # pragma: no cover - interface
        raise NotImplementedError


def _pct(r: _Rng, x: float) -> str:
    text = f"{x:g}"
    return f"{text} percent" if r.random() < 0.7 else f"{text}%"


class _Stocks(_Family):
    templates = 6
    UP = ("rose", "climbed", "gained", "jumped", "advanced", "rallied")
    UP_BASE = ("rise", "climb", "gain", "jump", "advance")
    DOWN = ("fell", "dropped", "slid", "declined", "tumbled", "sank")
    DOWN_BASE = ("fall", "drop", "slide", "decline", "tumble")
    REASONS = {
        True: (
            ("after the company reported stronger-than-expected quarterly earnings",
             "following better-than-expected quarterly results", "after quarterly profit beat forecasts"),
            ("after it raised its full-year forecast", "after the company lifted its outlook for the year",
             "following an upgraded annual forecast"),
            ("on reports of a possible takeover bid", "amid reports that a rival was preparing an offer",
             "after news of a takeover approach"),
            ("after winning a large government contract", "after the company secured a major state contract",
             "following news of a big government order"),
            ("after analysts upgraded the stock", "following an upgrade from several analysts",
             "after brokers raised their rating on the shares"),
        ),
        False: (
            ("after the company cut its profit forecast", "after it lowered its earnings outlook",
             "following a downgraded profit forecast"),
            ("after its chief executive unexpectedly resigned",
             "following the surprise resignation of its chief executive",
             "after the sudden departure of its chief executive"),
            ("after regulators opened an investigation into its accounts",
             "following news of a regulatory probe into its accounting",
             "after officials launched an inquiry into its books"),
            ("after quarterly sales fell short of expectations",
             "after the company reported weaker-than-expected sales",
             "following disappointing quarterly revenue"),
            ("after a major customer cancelled its orders", "after losing its biggest customer",
             "following the loss of a key client"),
        ),
    }

    def sample(self, r):
        up = r.random() < 0.5
        pct = r.choice((r.randint(1, 15), round(r.uniform(0.5, 12.0), 1)))
        return dict(company=r.choice(_COMPANIES), up=up, pct=pct, price=round(r.uniform(4, 260), 2),
                    day=_day(r), reason=r.randrange(5), changes=frozenset())

    def perturb(self, r, f):
        g = dict(f)
        kind = r.choice(("pct", "pct", "price", "company", "up", "day", "reason"))
        if kind == "pct":
            while g["pct"] == f["pct"]:
                g["pct"] = r.choice((f["pct"] + r.choice((-3, -2, -1, 1, 2, 3, 5)), r.randint(1, 15),
                                     round(r.uniform(0.5, 12.0), 1)))
                if g["pct"] <= 0:
                    g["pct"] = f["pct"]
        elif kind == "price":
            g["price"] = round(f["price"] + r.choice((-1, 1)) * r.uniform(0.5, 9), 2)
        elif kind == "company":
            g["company"] = _other(r, _COMPANIES, f["company"])
        elif kind == "up":
            g["up"] = not f["up"]
        elif kind == "day":
            g["day"] = _other(r, _WEEKDAYS, f["day"])
        else:
            g["reason"] = _other(r, range(5), f["reason"])
        g["changes"] = f["changes"] | {kind}
        return g

    def realize(self, r, f, t, detail):
        c, up = f["company"], f["up"]
        verb = r.choice(self.UP if up else self.DOWN)
        base = r.choice(self.UP_BASE if up else self.DOWN_BASE)
        pct, price, day = _pct(r, f["pct"]), f"${f['price']:.2f}", f["day"]
        reason = r.choice(self.REASONS[up][f["reason"]]) if detail else ""
        if t == 0:
            s = f"shares of {c} {verb} {pct} to {price} on {day} {reason}"
        elif t == 1:
            s = f"{_poss(c)} shares {verb} {pct} on {day}, closing at {price} {reason}"
        elif t == 2:
            s = f"on {day}, {c} stock {verb} {pct} to {price} {reason}"
        elif t == 3:
            s = f"{c} saw its share price {base} {pct} to {price} on {day} {reason}"
        elif t == 4 and detail:
            s = f"{reason}, {c} shares {verb} {pct} to {price} on {day}"
        else:
            s = f"{c} stock ended {day}'s session {'up' if up else 'down'} {pct} at {price} {reason}"
        return _sentence(s)


class _Jobs(_Family):
    templates = 6
    CUT = ("cut {n} jobs", "eliminate {n} positions", "lay off {n} workers", "shed {n} jobs",
           "reduce its workforce by {n}")
    ADD = ("create {n} jobs", "hire {n} new workers", "add {n} positions", "expand its workforce by {n}",
           "take on {n} new staff")
    NUMBERS = (120, 150, 200, 250, 300, 400, 450, 600, 750, 800, 1200, 1500, 2000, 2500, 3500, 5000)

    def sample(self, r):
        when = r.choice(("by {y}", "by the end of {y}", "over the next two years", "over the next three years",
                         "before {y}", "within eighteen months", "by the middle of {y}"))
        return dict(company=r.choice(_COMPANIES), add=r.random() < 0.45, n=r.choice(self.NUMBERS),
                    city=r.choice(_CITIES), when=when.format(y=r.choice((2025, 2026, 2027, 2028))),
                    day=_day(r), neg=r.random() < 0.15, changes=frozenset())

    def perturb(self, r, f):
        g = dict(f)
        kind = r.choice(("n", "n", "city", "add", "neg", "company", "when"))
        if kind == "n":
            g["n"] = _other(r, self.NUMBERS, f["n"])
        elif kind == "city":
            g["city"] = _other(r, _CITIES, f["city"])
        elif kind == "add":
            g["add"] = not f["add"]
        elif kind == "neg":
            g["neg"] = not f["neg"]
        elif kind == "company":
            g["company"] = _other(r, _COMPANIES, f["company"])
        else:
            year = re.compile(r"\d{4}")
            while g["when"] == f["when"] or year.findall(g["when"]) == year.findall(f["when"]) != []:
                g["when"] = self.sample(r)["when"]
        g["changes"] = f["changes"] | {kind}
        return g

    def realize(self, r, f, t, detail):
        c, n, city, day, when = f["company"], f"{f['n']:,}", f["city"], f["day"], f["when"]
        if not detail and "when" not in f["changes"]:
            when = ""
        vp = r.choice(self.ADD if f["add"] else self.CUT).format(n=n)
        if f["neg"]:
            if t % 3 == 0:
                s = f"{c} said on {day} it had no plans to {vp} in {city} {when}"
            elif t % 3 == 1:
                s = f"{c} will not {vp} in {city} {when}, the company said on {day}"
            else:
                s = f"on {day}, {c} denied reports that it would {vp} in {city} {when}"
            return _sentence(s)
        if t == 0:
            s = f"{c} said on {day} it would {vp} in {city} {when}"
        elif t == 1:
            s = f"{c} plans to {vp} in {city} {when}, the company said on {day}"
        elif t == 2:
            s = f"on {day}, {c} announced plans to {vp} in {city} {when}"
        elif t == 3:
            s = f"{c} will {vp} at its operations in {city} {when}, a spokesperson said on {day}"
        elif t == 4:
            done = r.choice(("created", "added")) if f["add"] else r.choice(("cut", "eliminated"))
            s = f"about {n} jobs in {city} will be {done} by {c} {when}, the company announced on {day}"
        else:
            s = f"{c} is set to {vp} in {city} {when}, according to a statement released on {day}"
        return _sentence(s)


class _Politics(_Family):
    templates = 6
    TITLES = ("Senator", "Mayor", "Governor", "Councillor", "Finance Minister", "Health Minister",
              "union leader", "opposition leader", "Attorney General", "party chairman")
    VERBS = {
        "criticize": (("criticized", "sharply criticized", "attacked", "lashed out at", "condemned", "took aim at"),
                      ("was criticized by", "came under fire from", "was attacked by", "was condemned by"),
                      "over {topic}"),
        "praise": (("praised", "commended", "applauded", "thanked", "publicly praised"),
                   ("was praised by", "won praise from", "was commended by", "was applauded by"),
                   "for the handling of {topic}"),
        "sue": (("sued", "filed a lawsuit against", "took legal action against"),
                ("was sued by", "was hit with a lawsuit from", "faced legal action from"),
                "over {topic}"),
        "endorse": (("endorsed", "backed", "gave public backing to"),
                    ("was endorsed by", "won the backing of", "received the endorsement of"),
                    "ahead of {election}"),
    }
    TOPICS = ("the city budget", "the new tax law", "the stalled housing plan", "a proposed stadium deal",
              "school funding", "the response to the floods", "rising bus fares", "the closure of two hospitals",
              "the water crisis", "plans for a new airport", "a pension reform bill", "the police budget",
              "the port expansion", "a controversial mining licence", "the delayed metro line")
    ELECTIONS = ("next month's primary", "the mayoral race", "the November election", "the leadership vote",
                 "the regional election", "Thursday's runoff")

    def _who(self, r):
        return f"{r.choice(self.TITLES)} {r.choice(_FIRST_F + _FIRST_M)} {r.choice(_LAST)}"

    def sample(self, r):
        a = self._who(r)
        b = self._who(r)
        while b.split()[-1] == a.split()[-1]:
            b = self._who(r)
        return dict(a=a, b=b, verb=r.choice(tuple(self.VERBS)), topic=r.choice(self.TOPICS),
                    election=r.choice(self.ELECTIONS), day=_day(r), changes=frozenset())

    def perturb(self, r, f):
        g = dict(f)
        kind = r.choice(("swap", "swap", "verb", "topic", "b", "day"))
        if kind == "swap":
            g["a"], g["b"] = f["b"], f["a"]
        elif kind == "verb":
            g["verb"] = _other(r, tuple(self.VERBS), f["verb"])
        elif kind == "topic":
            if f["verb"] == "endorse":
                g["election"] = _other(r, self.ELECTIONS, f["election"])
            else:
                g["topic"] = _other(r, self.TOPICS, f["topic"])
        elif kind == "b":
            while g["b"] == f["b"] or g["b"] == f["a"]:
                g["b"] = self._who(r)
        else:
            g["day"] = _other(r, _WEEKDAYS, f["day"])
        g["changes"] = f["changes"] | {kind}
        return g

    def realize(self, r, f, t, detail):
        act, pas, pp = self.VERBS[f["verb"]]
        act, pas = r.choice(act), r.choice(pas)
        pp = pp.format(topic=f["topic"], election=f["election"]) if (detail or "topic" in f["changes"]) else ""
        a, b, day = f["a"], f["b"], f["day"]
        if t == 0:
            s = f"{a} {act} {b} {pp} on {day}"
        elif t == 1:
            s = f"{b} {pas} {a} {pp} on {day}"
        elif t == 2:
            s = f"on {day}, {a} {act} {b} {pp}"
        elif t == 3:
            s = f"{a} {act} {b} on {day} {pp}, {r.choice(('aides said', 'according to a statement', 'officials said'))}"
        elif t == 4:
            s = f"{b} {pas} {a} on {day} {pp}"
        else:
            s = f"in a statement on {day}, {a} {act} {b} {pp}"
        return _sentence(s)


class _Sports(_Family):
    templates = 6
    TEAMS = ("Riverton United", "Northgate Rovers", "Eastbrook City", "Westfield Athletic", "Kingsport Wanderers",
             "Millbrook Town", "Ashford Rangers", "Lakeview FC", "Stonebridge Albion", "Harrow Vale",
             "Port Milton", "Oakridge Celtic", "Bramley Forest", "Castleton Villa", "Redhill Dynamo")
    GOALS = {1: ("once", "a goal from {s}"), 2: ("twice", "two goals from {s}"),
             3: ("three times", "a hat-trick from {s}")}

    def sample(self, r):
        w, l = r.sample(self.TEAMS, 2)
        s1 = r.randint(1, 5)
        s2 = r.randint(0, s1 - 1)
        return dict(w=w, l=l, s1=s1, s2=s2, day=_day(r), scorer=_person(r)[0], goals=r.randint(1, min(3, s1)),
                    changes=frozenset())

    def perturb(self, r, f):
        g = dict(f)
        kind = r.choice(("swap", "swap", "score", "score", "scorer", "day", "goals"))
        if kind == "swap":
            g["w"], g["l"] = f["l"], f["w"]
        elif kind == "score":
            while (g["s1"], g["s2"]) == (f["s1"], f["s2"]):
                g["s1"] = max(1, f["s1"] + r.choice((-1, 0, 1, 2)))
                g["s2"] = r.randint(0, g["s1"] - 1)
            g["goals"] = min(g["goals"], g["s1"])
        elif kind == "scorer":
            g["scorer"] = _person(r)[0]
        elif kind == "goals" and f["s1"] > 1:
            g["goals"] = _other(r, range(1, min(3, f["s1"]) + 1), f["goals"])
        else:
            kind = "day"
            g["day"] = _other(r, _WEEKDAYS, f["day"])
        g["changes"] = f["changes"] | {kind}
        return g

    def realize(self, r, f, t, detail):
        w, l, day = f["w"], f["l"], f["day"]
        score = f"{f['s1']}-{f['s2']}"
        detail = detail or bool(f["changes"] & {"scorer", "goals"})
        once, from_s = self.GOALS[f["goals"]]
        sc = f["scorer"]
        extra = ""
        if detail:
            extra = r.choice((f", with {sc} scoring {once}", f" thanks to {from_s.format(s=sc)}",
                              f", {sc} scoring {once}"))
        if t == 0:
            s = f"{w} beat {l} {score} on {day}{extra}"
        elif t == 1:
            s = f"{l} lost {score} to {w} on {day}{extra}"
        elif t == 2:
            s = f"{w} earned a {score} win over {l} on {day}{extra}"
        elif t == 3:
            s = f"on {day}, {w} defeated {l} {score}{extra}"
        elif t == 4:
            s = f"{l} fell to a {score} defeat against {w} on {day}{extra}"
        elif detail:
            s = f"{sc} scored {once} as {w} beat {l} {score} on {day}"
        else:
            s = f"{w} won {score} against {l} on {day}"
        return _sentence(s)


class _Police(_Family):
    templates = 5
    EVENTS = ("a protest over fuel prices", "clashes at a football match", "a series of raids on illegal gambling dens",
              "a demonstration outside parliament", "a night of looting", "a raid on a warehouse",
              "a street fight near the station", "a march against the new housing law",
              "an investigation into stolen cars", "a rally that turned violent")
    ACT = {"arrest": (("arrested {n} people", "detained {n} people", "took {n} people into custody"),
                      ("were arrested", "were detained", "were taken into custody")),
           "charge": (("charged {n} people", "brought charges against {n} people"), ("were charged", "faced charges"))}

    def sample(self, r):
        return dict(city=r.choice(_CITIES), n=r.randint(2, 60), event=r.choice(self.EVENTS), day=_day(r),
                    act=r.choice(("arrest", "arrest", "charge")), changes=frozenset())

    def perturb(self, r, f):
        g = dict(f)
        kind = r.choice(("n", "n", "city", "event", "day", "act"))
        if kind == "n":
            while g["n"] == f["n"]:
                g["n"] = max(2, f["n"] + r.choice((-10, -5, -3, -2, -1, 1, 2, 3, 5, 10)))
        elif kind == "act":
            g["act"] = "charge" if f["act"] == "arrest" else "arrest"
        elif kind in ("city", "day"):
            g[kind] = _other(r, _CITIES if kind == "city" else _WEEKDAYS, f[kind])
        else:
            g["event"] = _other(r, self.EVENTS, f["event"])
        g["changes"] = f["changes"] | {kind}
        return g

    def realize(self, r, f, t, detail):
        act, pas = (r.choice(v) for v in self.ACT[f["act"]])
        n, city, day = _num(r, f["n"]), f["city"], f["day"]
        ev = f["event"]
        act = act.format(n=n)
        if t == 0:
            s = f"police in {city} {act} on {day} after {ev}"
        elif t == 1:
            lead = n if not n[0].isdigit() else f"a total of {n}"
            s = f"{lead} people {pas} in {city} on {day} following {ev}, police said"
        elif t == 2:
            s = f"{city} police {act} on {day} after {ev}"
        elif t == 3:
            s = f"on {day}, police in {city} {act} following {ev}"
        else:
            s = f"officers {act} in {city} after {ev} on {day}, a police spokesman said"
        return _sentence(s)


class _Statistics(_Family):
    templates = 4
    MEASURES = (("the unemployment rate", "the jobless rate", "unemployment"),
                ("inflation", "consumer price inflation", "the annual inflation rate"),
                ("the youth unemployment rate", "youth unemployment", "the jobless rate among young people"))
    AGENCY = ("the statistics office", "the national statistics agency", "official figures", "the government")

    def sample(self, r):
        up = r.random() < 0.5
        x = round(r.uniform(1.5, 12), 1)
        y = round(x - r.choice((0.1, 0.2, 0.3, 0.4, 0.5, 0.8)) * (1 if up else -1), 1)
        m = r.randrange(12)
        return dict(country=r.choice(_COUNTRIES), measure=r.randrange(3), up=up, x=x, y=y, month=m,
                    agency=r.choice(self.AGENCY), changes=frozenset())

    def perturb(self, r, f):
        g = dict(f)
        kind = r.choice(("x", "x", "month", "country", "measure", "up"))
        if kind == "x":
            while g["x"] == f["x"] or (g["x"] <= g["y"]) == f["up"]:
                g["x"] = round(f["x"] + r.choice((-1, 1)) * r.choice((0.2, 0.3, 0.5, 1.0, 1.5)), 1)
            g["up"] = g["x"] > g["y"]
        elif kind == "up":
            g["x"], g["y"], g["up"] = f["y"], f["x"], not f["up"]
        elif kind == "month":
            g["month"] = _other(r, range(12), f["month"])
        elif kind == "country":
            g["country"] = _other(r, _COUNTRIES, f["country"])
        else:
            g["measure"] = _other(r, range(3), f["measure"])
        g["changes"] = f["changes"] | {kind}
        return g

    def realize(self, r, f, t, detail):
        measure = r.choice(self.MEASURES[f["measure"]])
        verb = r.choice(("rose", "climbed", "increased", "edged up") if f["up"] else ("fell", "dropped", "eased", "declined"))
        x, y = _pct(r, f["x"]), _pct(r, f["y"])
        month, prev = _MONTHS[f["month"]], _MONTHS[f["month"] - 1]
        c, agency = f["country"], f["agency"]
        detail = detail or "up" in f["changes"]
        said = "official figures showed" if agency == "official figures" else f"{agency} said"
        bare = measure.removeprefix("the ")
        if t == 0:
            since = f" from {y} in {prev}" if detail else ""
            s = f"{measure} in {c} {verb} to {x} in {month}{since}, {said}"
        elif t == 1:
            since = f", {'up' if f['up'] else 'down'} from {y} a month earlier" if detail else ""
            s = f"{measure} in {c} {verb} to {x} in {month}{since}, according to {agency}"
        elif t == 2:
            since = f", from {y} in {prev}" if detail else ""
            s = f"in {month}, {c}'s {bare} {verb} to {x}{since}"
        else:
            since = f" after {y} the month before" if detail else ""
            s = f"{c}'s {bare} {verb} to {x} in {month}{since}, {said}"
        return _sentence(s)


class _Executives(_Family):
    templates = 4
    ROLES = ("chief executive", "chief financial officer", "chairman", "president", "chief operating officer",
             "head of research")

    def sample(self, r):
        p, pron = _person(r)
        return dict(person=p, pron=pron, role=r.choice(self.ROLES), company=r.choice(_COMPANIES),
                    month=r.choice(_MONTHS), day=_day(r), successor=_person(r)[0], neg=r.random() < 0.15,
                    changes=frozenset())

    def perturb(self, r, f):
        g = dict(f)
        kind = r.choice(("role", "month", "company", "person", "neg", "successor"))
        if kind == "role":
            g["role"] = _other(r, self.ROLES, f["role"])
        elif kind == "month":
            g["month"] = _other(r, _MONTHS, f["month"])
        elif kind == "company":
            g["company"] = _other(r, _COMPANIES, f["company"])
        elif kind == "person":
            g["person"], g["pron"] = _person(r)
        elif kind == "neg":
            g["neg"] = not f["neg"]
        else:
            g["successor"] = _person(r)[0]
        g["changes"] = f["changes"] | {kind}
        return g

    def realize(self, r, f, t, detail):
        p, role, c, month, day = f["person"], f["role"], f["company"], f["month"], f["day"]
        if f["neg"]:
            form = r.randrange(3)
            if t % 2:
                stay = ("had no plans to step down at", "would not step down at", "would stay on beyond")[form]
                s = f"{c} said on {day} that its {role}, {p}, {stay} the end of {month}"
            else:
                stay = ("has no plans to step down at", "will not step down at", "will stay on beyond")[form]
                s = f"{p}, the {role} of {c}, {stay} the end of {month}, the company said on {day}"
            return _sentence(s)
        detail = detail or "successor" in f["changes"]
        succ = r.choice((f" and will be succeeded by {f['successor']}", f" and will be replaced by {f['successor']}")) if detail else ""
        succ_past = succ.replace("will be", "would be")
        if t == 0:
            s = f"{p}, the {role} of {c}, will step down at the end of {month}{succ}, the company said on {day}"
        elif t == 1:
            s = f"{c} said on {day} that its {role}, {p}, would leave the company at the end of {month}{succ_past}"
        elif t == 2:
            s = f"{_poss(c)} {role} {p} will {r.choice(('retire', 'step down', 'leave'))} at the end of {month}{succ}, the company announced on {day}"
        else:
            s = f"{p} is to step down as {role} of {c} at the end of {month}{succ}, {c} said in a statement on {day}"
        return _sentence(s)


_PARA_FAMILIES = (_Stocks(), _Jobs(), _Politics(), _Sports(), _Police(), _Statistics(), _Executives())


_DETAIL_KINDS = frozenset(("reason", "topic", "scorer", "goals", "successor", "when"))


def _gen_paraphrase(r: _Rng, label: str) -> tuple[str, str]:
    fam = r.choice(_PARA_FAMILIES)
    f = fam.sample(r)
    g = f
    if label == "not_equivalent":
        # 35 %: one subtle change (a number, a name, a role swap, a negation);
        # otherwise two or three changes, as with MRPC pairs that only share a topic.
        wanted = r.choices((1, 2, 3), weights=(0.35, 0.35, 0.30))[0]
        for _ in range(20):
            g = f
            for _ in range(wanted):
                g = fam.perturb(r, g)
            if {k: v for k, v in g.items() if k != "changes"} != {k: v for k, v in f.items() if k != "changes"}:
                break
    t1 = r.randrange(fam.templates)
    t2 = t1 if r.random() < 0.25 else _other(r, range(fam.templates), t1)
    # Sometimes one side omits a detail (as in MRPC); never a detail that was changed.
    d1 = d2 = True
    if not g["changes"] & _DETAIL_KINDS:
        roll = r.random()
        if roll < 0.35:
            d1, d2 = (False, True) if r.random() < 0.5 else (True, False)
        elif roll < 0.5:
            d1 = d2 = False
    for _ in range(6):
        s1 = fam.realize(r, f, t1, d1)
        s2 = fam.realize(r, g, t2, d2)
        if s1 != s2:
            break
        t2 = _other(r, range(fam.templates), t1)
    if r.random() < 0.5:
        s1, s2 = s2, s1
    return s1, s2


# =========================================================================== entailment (RTE-like)

_SUBJECTS = ("economics", "physics", "medicine", "law", "engineering", "chemistry", "history", "architecture",
             "computer science", "biology", "philosophy", "mathematics")
_UNIVERSITIES = ("the University of Toronto", "Oxford University", "the University of Lagos", "Kyoto University",
                 "the Sorbonne", "Stanford University", "Trinity College Dublin", "the University of Melbourne",
                 "Heidelberg University", "the University of Cape Town", "McGill University", "Delft University")
_INDUSTRIES = ("software", "biotechnology", "logistics", "solar energy", "insurance", "food delivery",
               "chip design", "mining", "fashion", "video game", "payments", "shipping")
_DISASTERS = (("earthquake", "struck"), ("flood", "swept through"), ("storm", "hit"), ("wildfire", "tore through"),
              ("landslide", "buried villages in"), ("cyclone", "slammed into"))
_REGIONS = ("northern Chile", "the coast of Peru", "central Italy", "eastern Turkey", "southern Japan",
            "the north of India", "western Kenya", "the island of Luzon", "southern Mexico", "northern Greece",
            "the Andes", "the Ganges delta", "rural Colombia", "eastern Australia")
_ROLES_POL = ("prime minister", "foreign minister", "president", "trade minister", "defence minister",
              "finance minister")
_MEET_TOPICS = ("trade", "border security", "climate policy", "energy prices", "a new fishing agreement",
                "refugee policy", "new rail links", "debt relief")
_BUILDINGS = ("concert hall", "central library", "railway station", "museum of modern art", "city hall",
              "old customs house", "opera house", "science museum", "exhibition centre", "former cathedral")
_INSTITUTIONS = ("the national archives", "a university library", "a museum of local history",
                 "the city orchestra", "a school of design", "the regional parliament", "a technology museum")
_PRIZES = ("the Golden Lion", "the Palme d'Or", "the Booker Prize", "the Pritzker Prize", "an Academy Award",
           "the Nobel Prize in Literature", "the Pulitzer Prize", "the Turner Prize")
_WORKS = ("The Silent Harbour", "Winter in Lisbon", "A House of Glass", "The Last Orchard", "Paper Kingdoms",
          "Blue Hour", "The Salt Road", "Distant Thunder", "Echoes of Granite", "The Lighthouse Keeper")


def _yr(r: _Rng, lo=1940, hi=1995) -> int:
    return r.randint(lo, hi)


def _ent_bio(r: _Rng) -> tuple[str, list]:
    name, pron = _person(r)
    other, _ = _person(r)
    city, year, subj, uni, org = (r.choice(_CITIES), _yr(r), r.choice(_SUBJECTS), r.choice(_UNIVERSITIES),
                                  r.choice(_COMPANIES))
    last = name.split()[-1]
    t = r.randrange(4)
    if t == 0:
        p = f"{name}, who was born in {city} in {year}, studied {subj} at {uni} before founding {org}"
    elif t == 1:
        p = f"born in {city} in {year}, {name} founded {org} after earning a degree in {subj} from {uni}"
    elif t == 2:
        p = f"{org} was founded by {name}, a {city} native who studied {subj} at {uni} and was born in {year}"
    else:
        p = f"after studying {subj} at {uni}, {name}, a native of {city} born in {year}, went on to found {org}"
    if r.random() < 0.3:
        p += f". {pron.capitalize()} later served as an adviser to the government of {r.choice(_COUNTRIES)}"
    k = r.randint(1, 9)
    slots = [
        (f"{name} was born in {city}", f"{name} was born in {_other(r, _CITIES, city)}"),
        (f"{name} was born in {year}", f"{name} was born in {year + r.choice((-3, -1, 1, 2, 5))}"),
        (f"{name} founded {org}", f"{name} founded {_other(r, _COMPANIES, org)}"),
        (f"{org} was founded by {name}", f"{org} was founded by {other}"),
        (f"{name} studied {subj}", f"{name} studied {_other(r, _SUBJECTS, subj)}"),
        (f"{name} attended {uni}", f"{name} attended {_other(r, _UNIVERSITIES, uni)}"),
        (f"{last} is the founder of {org}", f"{last} is the founder of {uni}"),
        (f"{name} was born before {year + k}", f"{name} was born after {year + k}"),
        (f"{name} started {org}", f"{name} sold {org}"),
    ]
    if t != 2:
        slots.append((f"{name} studied {subj} before founding a company", f"{name} studied {subj} after founding a company"))
    return p, slots


_AMOUNTS = ("$1.2 billion", "$1.8 billion", "$2.5 billion", "$3.4 billion", "$4.1 billion", "$6.7 billion",
            "$12 billion", "$430 million", "$850 million", "$920 million", "$275 million", "$640 million")


def _ent_acquisition(r: _Rng) -> tuple[str, list]:
    a, b = r.sample(_COMPANIES, 2)
    ind, city = r.choice(_INDUSTRIES), r.choice(_CITIES)
    amount, amount2 = r.sample(_AMOUNTS, 2)
    day = _day(r)
    if r.random() < 0.3:  # the deal fell through
        p = r.choice((
            f"{_poss(a)} planned takeover of {b}, {_with_a(ind)} company based in {city}, collapsed on {day} after the two sides failed to agree on a price of about {amount}",
            f"{b}, {_with_a(ind)} firm with headquarters in {city}, rejected a takeover offer of about {amount} from {a} on {day}, saying it would remain independent",
        ))
        return p, [
            (f"{a} made an offer for {b}", f"{b} made an offer for {a}"),
            (f"{b} is based in {city}", f"{a} is based in {city}"),
            (f"{b} will remain independent", f"{b} will be taken over"),
            (f"{a} is not acquiring {b}", f"{a} is acquiring {b}"),
            (f"{b} is {_with_a(ind)} company", f"{a} is {_with_a(ind)} company"),
            (f"the deal between {a} and {b} collapsed", f"{a} and {b} have agreed a deal"),
            (f"the offer was worth about {amount}", f"the offer was worth about {amount2}"),
        ]
    t = r.randrange(3)
    if t == 0:
        p = f"{a} has agreed to buy {b}, {_with_a(ind)} company based in {city}, for about {amount}, the two firms said on {day}"
    elif t == 1:
        p = f"in a deal worth about {amount}, {city}-based {b} will be acquired by {a}, which wants to expand into {ind}"
    else:
        p = f"{b}, {_with_a(ind)} firm with headquarters in {city}, said on {day} that it had accepted a takeover offer of about {amount} from {a}"
    slots = [
        (f"{a} is acquiring {b}", f"{b} is acquiring {a}"),
        (f"{b} will be bought by {a}", f"{a} will be bought by {b}"),
        (f"{b} is based in {city}", f"{a} is based in {city}"),
        (f"{b} is based in {city}", f"{b} is based in {_other(r, _CITIES, city)}"),
        (f"{a} made an offer for {b}", f"{b} made an offer for {a}"),
        (f"{b} is being sold", f"{a} is being sold"),
        (f"{b} has its headquarters in {city}", f"{a} has its headquarters in {city}"),
        (f"the deal is worth about {amount}", f"the deal is worth about {amount2}"),
        (f"{a} and {b} have agreed a deal", f"the deal between {a} and {b} collapsed"),
        (f"{b} will be taken over", f"{b} will remain independent"),
        (f"{a} is acquiring {b}", f"{a} is not acquiring {b}"),
    ]
    if t != 1:
        slots.append((f"{b} is {_with_a(ind)} company", f"{a} is {_with_a(ind)} company"))
    return p, slots


def _ent_disaster(r: _Rng) -> tuple[str, list]:
    (kind, verb), region = r.choice(_DISASTERS), r.choice(_REGIONS)
    n, m = r.sample(range(3, 90), 2)
    homes = m * r.choice((10, 20, 50))
    day = _day(r)
    other = _other(r, [d[0] for d in _DISASTERS], kind)
    if r.random() < 0.3:  # nobody died
        p = r.choice((
            f"{_with_a(kind)} {verb} {region} on {day}, damaging about {homes:,} homes, but no deaths were reported, officials said",
            f"about {homes:,} homes were damaged when {_with_a(kind)} {verb} {region} on {day}, though no one was killed",
        ))
        return p, [
            (f"{_with_a(kind)} hit {region}", f"{_with_a(other)} hit {region}"),
            (f"nobody was killed when {_with_a(kind)} hit {region}", f"people were killed when {_with_a(kind)} hit {region}"),
            (f"about {homes:,} homes were damaged", f"about {n} homes were damaged"),
            (f"no one died in {region}", f"at least {n} people were killed in {region}"),
            (f"the {kind} damaged homes in {region}", f"the {kind} damaged homes in {_other(r, _REGIONS, region)}"),
        ]
    t = r.randrange(3)
    if t == 0:
        p = f"a powerful {kind} {verb} {region} on {day}, killing at least {n} people and destroying about {homes:,} homes, officials said"
    elif t == 1:
        p = f"at least {n} people died and about {homes:,} homes were destroyed when {_with_a(kind)} {verb} {region} on {day}"
    else:
        p = f"rescue teams in {region} were still searching for survivors on {day}, a day after {_with_a(kind)} killed at least {n} people and left about {homes:,} homes in ruins"
    slots = [
        (f"{_with_a(kind)} hit {region}", f"{_with_a(other)} hit {region}"),
        (f"{_with_a(kind)} hit {region}", f"{_with_a(kind)} hit {_other(r, _REGIONS, region)}"),
        (f"at least {n} people were killed in {region}", f"at least {homes:,} people were killed in {region}"),
        (f"people were killed when {_with_a(kind)} hit {region}", f"nobody was hurt when {_with_a(kind)} hit {region}"),
        (f"about {homes:,} homes were destroyed", f"about {n} homes were destroyed"),
        (f"more than {max(1, n - r.randint(1, 3))} people died", f"more than {n + r.randint(5, 50)} people died"),
        (f"not everyone survived the {kind}", f"no one died in {region}"),
        (f"the {kind} destroyed homes in {region}", f"the {kind} left every home in {region} standing"),
    ]
    return p, slots


def _ent_meeting(r: _Rng) -> tuple[str, list]:
    p1, p2 = _person(r)[0], _person(r)[0]
    while p2.split()[-1] == p1.split()[-1]:
        p2 = _person(r)[0]
    c1, c2 = r.sample(_COUNTRIES, 2)
    role1, role2 = r.choice(_ROLES_POL), r.choice(_ROLES_POL)
    city, topic, day = r.choice(_CITIES), r.choice(_MEET_TOPICS), _day(r)
    if r.random() < 0.3:  # the meeting was called off
        if r.random() < 0.5:
            p = f"{p1}, the {role1} of {c1}, cancelled a planned meeting with {p2}, {c2}'s {role2}, in {city} on {day}, citing disagreements over {topic}"
            reason = (f"{c1} and {c2} disagree about {topic}", f"{p1} and {p2} discussed {topic} in {city}")
        else:
            p = f"talks on {topic} between {c1} and {c2}, due to be held in {city} on {day}, were called off after {c1}'s {role1} {p1} refused to meet {p2}, the {role2} of {c2}"
            reason = (f"{p1} refused to meet {p2}", f"{p2} refused to meet {p1}")
        return p, [reason,
            (f"{p1} is the {role1} of {c1}", f"{p2} is the {role1} of {c1}"),
            (f"{p1} did not meet {p2}", f"{p1} met {p2}"),
            (f"the talks between {c1} and {c2} were cancelled", f"representatives of {c1} and {c2} held talks"),
            (f"{p2} holds office in {c2}", f"{p2} holds office in {c1}"),
        ]
    t = r.randrange(3)
    if t == 0:
        p = f"{p1}, the {role1} of {c1}, met {p2}, {c2}'s {role2}, in {city} on {day} to discuss {topic}"
    elif t == 1:
        p = f"talks on {topic} between {c1} and {c2} were held in {city} on {day}, where {c1}'s {role1} {p1} met {p2}, the {role2} of {c2}"
    else:
        p = f"{c1}'s {role1}, {p1}, travelled to {city} on {day} for talks on {topic} with {p2}, the {role2} of {c2}"
    slots = [
        (f"{p1} is the {role1} of {c1}", f"{p2} is the {role1} of {c1}"),
        (f"{p1} is the {role1} of {c1}", f"{p1} is the {role1} of {c2}"),
        (f"{p1} met {p2}", f"{p1} refused to meet {p2}"),
        (f"{p1} met {p2}", f"{p1} did not meet {p2}"),
        (f"{p1} and {p2} discussed {topic}", f"{p1} and {p2} discussed {_other(r, _MEET_TOPICS, topic)}"),
        (f"a meeting took place in {city}", f"a meeting took place in {_other(r, _CITIES, city)}"),
        (f"representatives of {c1} and {c2} held talks", f"the talks between {c1} and {c2} were cancelled"),
        (f"{p2} holds office in {c2}", f"{p2} holds office in {c1}"),
        (f"the talks took place on {day}", f"the talks took place on {_other(r, _WEEKDAYS, day)}"),
    ]
    return p, slots


def _ent_denial(r: _Rng) -> tuple[str, list]:
    org, city = r.choice(_COMPANIES), r.choice(_CITIES)
    site = r.choice(("factory", "plant", "warehouse", "call centre", "research lab", "office"))
    if r.random() < 0.45:  # confirmation instead of denial
        p = r.choice((
            f"{org} confirmed on {_day(r)} that it will close its {site} in {city} by the end of the year, blaming falling demand",
            f"ending months of speculation, {org} said it would shut its {city} {site}, although it denied that the move was linked to a newspaper report",
            f"a spokesperson for {org} said the company plans to close its {site} in {city} and move the work abroad",
        ))
        return p, [
            (f"{org} has {_with_a(site)} in {city}", f"{org} has {_with_a(site)} in {_other(r, _CITIES, city)}"),
            (f"{org} says its {site} in {city} will close", f"{org} says its {site} in {city} will remain open"),
            (f"{org} plans to close its {site} in {city}", f"{org} does not plan to close its {site} in {city}"),
            (f"{org} confirmed that its {site} in {city} will shut", f"{org} denies that its {site} in {city} will shut"),
            (f"the {site} in {city} will not stay open", f"{org} intends to keep its {site} in {city} open"),
            (f"{org} operates {_with_a(site)} in {city}", f"{org} is opening {_with_a(site)} in {city}"),
        ]
    t = r.randrange(3)
    if t == 0:
        p = f"{org} denied reports that it plans to close its {site} in {city}, saying work there would continue as normal"
    elif t == 1:
        p = f"despite rumours of closure, {org} insisted on {_day(r)} that its {site} in {city} would stay open and that no jobs were at risk"
    else:
        p = f"a spokesperson for {org} said the company had no intention of shutting its {city} {site}, contradicting a newspaper report"
    slots = [
        (f"{org} has {_with_a(site)} in {city}", f"{org} has {_with_a(site)} in {_other(r, _CITIES, city)}"),
        (f"{org} says its {site} in {city} will remain open", f"{org} says its {site} in {city} will close"),
        (f"{org} does not plan to close its {site} in {city}", f"{org} plans to close its {site} in {city}"),
        (f"{org} operates {_with_a(site)} in {city}", f"{org} has closed its {site} in {city}"),
        (f"{org} denies that its {site} in {city} will shut", f"{org} confirmed that its {site} in {city} will shut"),
        (f"{org} intends to keep its {site} in {city} open", f"the {site} in {city} will not stay open"),
    ]
    return p, slots


def _ent_award(r: _Rng) -> tuple[str, list]:
    d1, d2 = _person(r)[0], _person(r)[0]
    w1, w2 = r.sample(_WORKS, 2)
    prize, year = r.choice(_PRIZES), r.randint(1985, 2023)
    t = r.randrange(3)
    if t == 0:
        p = f"{w1}, the debut work of {d1}, was nominated for {prize} in {year} but lost to {w2} by {d2}"
    elif t == 1:
        p = f"{_poss(d2)} {w2} won {prize} in {year}, beating a shortlist that included {w1} by {d1}"
    else:
        p = f"although {d1} was widely expected to win {prize} in {year} for {w1}, the judges chose {w2} by {d2}"
    slots = [
        (f"{w2} won {prize}", f"{w1} won {prize}"),
        (f"{d2} is the author of {w2}", f"{d1} is the author of {w2}"),
        (f"{w1} did not win {prize}", f"{w2} did not win {prize}"),
        (f"{prize} went to {d2}", f"{prize} went to {d1}"),
        (f"{w2} won {prize} in {year}", f"{w2} won {prize} in {year + r.choice((-2, -1, 1, 3))}"),
        (f"{d1} created {w1}", f"{d2} created {w1}"),
        (f"{w1} was in contention for {prize}", f"{w2} was not in contention for {prize}"),
    ]
    return p, slots


def _ent_building(r: _Rng) -> tuple[str, list]:
    arch, other = _person(r)[0], _person(r)[0]
    b, city, year, inst = r.choice(_BUILDINGS), r.choice(_CITIES), r.randint(1880, 2015), r.choice(_INSTITUTIONS)
    if r.random() < 0.25:  # closed
        later = year + r.randint(20, 90)
        p = f"the {b} in {city}, designed by {arch} and completed in {year}, has been closed since {later}, when {inst} moved out"
        return p, [
            (f"the {b} is no longer in use", f"the {b} is still in use"),
            (f"the {b} is no longer used by {inst}", f"the {b} is used by {inst}"),
            (f"the {b} was designed by {arch}", f"the {b} was designed by {other}"),
            (f"the {b} was completed in {year}", f"the {b} was completed in {later}"),
            (f"the {b} is in {city}", f"the {b} is in {_other(r, _CITIES, city)}"),
        ]
    t = r.randrange(3)
    if t == 0:
        p = f"the {b} in {city}, designed by the architect {arch}, was completed in {year} and now houses {inst}"
    elif t == 1:
        p = f"completed in {year} to a design by {arch}, {city}'s {b} has been home to {inst} since its restoration"
    else:
        p = f"{arch} designed the {b} in {city}, which opened in {year}; today the building is used by {inst}"
    slots = [
        (f"{arch} designed the {b} in {city}", f"{arch} designed the {b} in {_other(r, _CITIES, city)}"),
        (f"the {b} was designed by {arch}", f"the {b} was designed by {other}"),
        (f"the {b} is in {city}", f"the {b} is in {_other(r, _CITIES, city)}"),
        (f"the {b} was completed in {year}", f"the {b} was completed in {year + r.choice((-10, -4, 3, 7, 12))}"),
        (f"{inst} is housed in the {b}", f"{_other(r, _INSTITUTIONS, inst)} is housed in the {b}"),
        (f"the {b} is still in use", f"the {b} is no longer in use"),
        (f"the {b} is used by {inst}", f"the {b} is no longer used by {inst}"),
        (f"{arch} worked as an architect", f"{inst} designed the {b}"),
    ]
    return p, slots


_ENT_FAMILIES: tuple[Callable[[_Rng], tuple[str, list]], ...] = (
    _ent_bio, _ent_acquisition, _ent_disaster, _ent_meeting, _ent_denial, _ent_award, _ent_building)


# Rewrites applied to half of all entailment hypotheses (true and false alike), so that
# entailed hypotheses do not simply reuse the premise's words.
_HYP_SYNONYMS = (
    (r"\bwas born in (?=[A-Z])", ("is a native of ", "comes from ")),
    (r"\bwas founded by\b", ("was set up by", "was established by")),
    (r"\bfounded\b", ("set up", "established")),
    (r"\bis the founder of\b", ("set up", "created")),
    (r"\bstudied\b", ("took courses in", "was a student of")),
    (r"\battended\b", ("was a student at", "went to")),
    (r"\bis acquiring\b", ("is buying", "is taking over")),
    (r"\bwill be bought by\b", ("will be purchased by", "is being taken over by")),
    (r"\bis based in\b", ("is headquartered in", "has its base in")),
    (r"\bmade an offer for\b", ("bid for", "offered to buy")),
    (r"\bhit\b", ("struck", "affected")),
    (r"\bwere killed\b", ("died", "lost their lives")),
    (r"\bdied\b", ("lost their lives", "were killed")),
    (r"\bhomes were (destroyed|damaged)\b", ("houses were \\1", "homes were \\1")),
    (r"\bmet\b", ("held talks with", "sat down with")),
    (r"\bdiscussed\b", ("talked about", "had talks on")),
    (r"\btook place\b", ("was held", "happened")),
    (r"\bholds office in\b", ("is a government minister in", "serves in the government of")),
    (r"\bwon\b", ("received", "was awarded")),
    (r"\bwent to\b", ("was awarded to", "was given to")),
    (r"\bis the author of\b", ("wrote", "is the writer of")),
    (r"\bcreated\b", ("wrote", "is the author of")),
    (r"\bdesigned\b", ("was the architect of", "drew up the plans for")),
    (r"\bwas designed by\b", ("was the work of", "was planned by")),
    (r"\bwas completed in\b", ("was finished in", "was finished in")),
    (r"\bis housed in\b", ("is based in", "has its home in")),
    (r"\bplans to close\b", ("intends to shut", "is going to shut")),
    (r"\bhas closed\b", ("has shut", "has shut down")),
    (r"\boperates\b", ("runs", "has")),
    (r"\bwill remain open\b", ("will stay open", "will keep running")),
    (r"\bis still in use\b", ("is still used", "remains in use")),
)
_HYP_PATTERNS = tuple((re.compile(pattern), options) for pattern, options in _HYP_SYNONYMS)


def _reword(r: _Rng, text: str) -> str:
    """Replace the first phrase of ``text`` that has a synonym in :data:`_HYP_SYNONYMS`."""
    for pattern, options in _HYP_PATTERNS:
        if pattern.search(text):
            return pattern.sub(r.choice(options), text, count=1)
    return text


def _new_names(hypothesis: str, premise: str) -> set[str]:
    """Capitalised words of ``hypothesis`` (past its first word) that ``premise`` does not contain.

    Numbers do not count: "more than 40 people died" names nobody and may hold of any premise.
    """
    said = set(re.findall(r"[\w']+", premise))
    return {word for word in re.findall(r"[\w']+", hypothesis)[1:] if word[:1].isupper() and word not in said}


def _gen_entailment(r: _Rng, label: str) -> tuple[str, str]:
    family = r.choice(_ENT_FAMILIES)
    premise, slots = family(r)
    if label == "entailment":
        hypothesis = r.choice(slots)[0]
    else:
        roll = r.random()
        if roll < 0.4:  # hard: the matched false version (swapped roles, changed number, negation...)
            hypothesis = r.choice(slots)[1]
        else:  # easier: a true statement about another event (other people and places, maybe another topic)
            other = family if roll < 0.75 else _other(r, _ENT_FAMILIES, family)
            while True:
                hypothesis = r.choice(other(r)[1])[0]
                # It must name someone or something the premise does not mention; a bare
                # "more than 40 people died" could be true of the premise by chance.
                if _new_names(hypothesis, premise):
                    break
    if r.random() < 0.5:
        hypothesis = _reword(r, hypothesis)
    if r.random() < 0.15:
        premise += r.choice((", according to local media", ", officials said", ", the report said",
                             ", news agencies reported"))
    return _sentence(premise), _sentence(hypothesis)


# =========================================================================== nli (MNLI-like)

# agent: (noun, pronoun, possessive, hypernyms, contradicting agents)
_AGENTS = (
    ("man", "he", "his", ("person", "guy"), ("woman", "little girl")),
    ("woman", "she", "her", ("person", "lady"), ("man", "little boy")),
    ("boy", "he", "his", ("child", "kid"), ("old woman", "grown man")),
    ("girl", "she", "her", ("child", "kid"), ("old man", "grown woman")),
    ("old man", "he", "his", ("man", "person", "elderly person"), ("young girl", "teenager")),
    ("elderly woman", "she", "her", ("woman", "person", "older person"), ("young boy", "teenager")),
    ("young man", "he", "his", ("man", "person"), ("old woman", "little girl")),
    ("young woman", "she", "her", ("woman", "person"), ("old man", "little boy")),
    ("teenage boy", "he", "his", ("teenager", "boy", "young person"), ("old woman", "baby")),
    ("teenage girl", "she", "her", ("teenager", "girl", "young person"), ("old man", "baby")),
    ("little girl", "she", "her", ("child", "girl", "kid"), ("old man", "grown man")),
    ("little boy", "he", "his", ("child", "boy", "kid"), ("old woman", "grown woman")),
)
# group: (phrase, hypernym, count word)
_GROUPS = (("two men", "two people", "men"), ("two women", "two people", "women"),
           ("three children", "some kids", "children"), ("a group of friends", "several people", "friends"),
           ("a couple", "two people", "couple"), ("several teenagers", "a few young people", "teenagers"),
           ("four tourists", "some visitors", "tourists"), ("a family", "several people", "family"))
# attribute: (premise phrase, entailed predicate, neutral predicate, contradicting predicate)
_ATTRS = (
    ("in a red jacket", "is wearing a red jacket", "bought the red jacket yesterday", "is wearing a green jacket"),
    ("wearing a blue hat", "has a hat on", "got the blue hat as a present", "is wearing a yellow hat"),
    ("with curly hair", "has curly hair", "has just been to the hairdresser", "is completely bald"),
    ("in a striped shirt", "is wearing a striped shirt", "is wearing {pos} favourite shirt", "is wearing a plain white shirt"),
    ("with a backpack", "has a backpack", "has a laptop in the backpack", "is carrying nothing at all"),
    ("in a yellow raincoat", "is wearing a raincoat", "is wearing a raincoat because rain is forecast", "is wearing a black raincoat"),
    ("with glasses", "is wearing glasses", "needs glasses to read", "has no glasses on"),
    ("in a long black coat", "is wearing a coat", "is wearing an expensive coat", "is wearing a short red coat"),
    ("with a grey beard", "has a beard", "has had a beard for years", "is clean-shaven"),
    ("in a green sweater", "is wearing a sweater", "knitted the sweater {pro}self", "is wearing a blue sweater"),
)
# location: (phrase, generic, inside?)
_LOCS = {
    "park": ("in a park", "in a park", False), "street": ("on a busy street", "in a city", False),
    "beach": ("on the beach", "near the sea", False), "kitchen": ("in a small kitchen", "in a kitchen", True),
    "station": ("inside a train station", "at a station", True), "market": ("in a crowded open-air market", "at a market", False),
    "library": ("in a quiet library", "in a library", True), "cafe": ("in a small cafe", "in a cafe", True),
    "bridge": ("on an old stone bridge", "on a bridge", False), "field": ("in a snowy field", "in the snow", False),
    "living": ("in a living room", "at home", True), "busstop": ("at a bus stop", "at a bus stop", False),
    "office": ("in an office", "at work", True), "garden": ("in a garden", "in a garden", False),
    "classroom": ("in a classroom", "at school", True), "boat": ("on a fishing boat", "on a boat", False),
    "square": ("in the town square", "in a town", False), "porch": ("on a wooden porch", "outside a house", False),
}
# action: (progressive phrase, generic phrases, allowed locations, group ok)
_ACTIONS = (
    ("playing a guitar", ("playing an instrument", "making music"), ("park", "street", "beach", "living", "porch", "square", "station"), False),
    ("playing the violin", ("playing an instrument", "making music"), ("park", "street", "square", "living", "station"), False),
    ("reading a newspaper", ("reading", "reading the news"), ("park", "cafe", "station", "busstop", "porch", "living", "bridge"), False),
    ("reading a thick book", ("reading", "reading a book"), ("library", "park", "cafe", "beach", "living", "garden", "classroom"), False),
    ("riding a bicycle", ("riding a bike", "cycling"), ("park", "street", "bridge", "square", "beach"), True),
    ("cooking pasta", ("preparing food", "cooking"), ("kitchen",), True),
    ("painting a fence", ("painting something", "working outside"), ("garden", "porch"), True),
    ("walking a dog", ("walking an animal", "out with a dog"), ("park", "street", "beach", "bridge", "field", "square"), True),
    ("feeding ducks", ("feeding birds", "feeding animals"), ("park", "bridge"), True),
    ("selling vegetables", ("selling food", "working at a stall"), ("market", "square", "street"), True),
    ("fixing a bicycle", ("repairing something", "working on a bike"), ("street", "garden", "porch", "park"), True),
    ("drinking coffee", ("having a drink", "drinking something hot"), ("cafe", "office", "porch", "kitchen", "station", "living"), True),
    ("eating a sandwich", ("eating", "having lunch"), ("park", "office", "bridge", "busstop", "beach", "station", "boat"), True),
    ("typing on a laptop", ("using a computer", "working on a laptop"), ("cafe", "office", "library", "living", "station", "classroom"), False),
    ("talking on the phone", ("making a call", "on the phone"), ("street", "office", "station", "busstop", "porch", "cafe", "market"), False),
    ("taking photographs", ("taking pictures", "using a camera"), ("bridge", "square", "beach", "market", "field", "park"), True),
    ("carrying a heavy box", ("carrying something", "holding a box"), ("street", "station", "office", "market", "porch"), True),
    ("building a snowman", ("playing in the snow", "making something out of snow"), ("field", "garden", "park"), True),
    ("building a sandcastle", ("playing in the sand", "making something out of sand"), ("beach",), True),
    ("kicking a football", ("playing with a ball", "playing football"), ("park", "beach", "field", "square", "street"), True),
    ("sweeping the floor", ("cleaning", "tidying up"), ("kitchen", "cafe", "classroom", "living", "porch"), False),
    ("waiting for a bus", ("waiting", "waiting for transport"), ("busstop", "street"), True),
    ("dancing to loud music", ("dancing", "moving to music"), ("living", "square", "beach", "street", "park"), True),
    ("mending a fishing net", ("repairing something", "working with a net"), ("boat", "beach"), True),
    ("writing on a whiteboard", ("writing", "writing something"), ("classroom", "office"), False),
    ("watering flowers", ("gardening", "looking after plants"), ("garden", "porch"), True),
    ("pushing a pram", ("pushing something", "pushing a pram"), ("park", "street", "square", "market"), False),
    ("sitting on a bench", ("resting", "sitting down"), ("park", "station", "busstop", "square"), True),
)
# activities that cannot happen at the same time as any scene: (progressive, "going to ..." form)
_CONTRA_ACTIONS = (("sleeping in bed", "go to bed"), ("swimming in a pool", "go swimming in a pool"),
                   ("driving a truck on the motorway", "drive a truck"), ("sitting in a cinema", "go to the cinema"),
                   ("asleep at home", "sleep at home"), ("flying a plane", "fly a plane"),
                   ("taking a shower", "take a shower"), ("lying in a hospital bed", "visit a hospital"))
# time of a scene -> a time that contradicts it
_TIMES = {"": "", "early in the morning": "late at night", "at night": "in the middle of the day",
          "on a sunny afternoon": "in the middle of the night", "at dusk": "at dawn", "in the evening": "in the morning",
          "on a cold morning": "in the evening", "at lunchtime": "at midnight"}
_OUT_TIMES = {"in the rain": "on a dry day", "on a windy day": "on a completely still day",
              "under a clear sky": "in heavy rain"}
_PURPOSES = ("to earn some extra money", "for a school project", "to impress {pos} friends", "because {pro} is bored",
             "for the first time", "while waiting for {pos} sister", "to relax after work", "for a competition",
             "as a birthday surprise", "before going to work", "because {pro} lost a bet", "with {pos} best friend",
             "for a television programme", "every weekend")
_NEUTRAL_NOT = ("on holiday", "in a hurry", "waiting for anyone", "a professional", "from around here", "tired",
                "worried about money", "new to the city")
_NEUTRAL_IS = ("on holiday", "a tourist from Spain", "waiting for a friend", "a professional", "famous",
               "very tired", "late for an appointment", "new to the city", "hungry", "thinking about work")


def _nli_scene(r: _Rng, label: str) -> tuple[str, str]:
    prog, gens, locs, group_ok = r.choice(_ACTIONS)
    loc, loc_gen, inside = _LOCS[r.choice(locs)]
    times = dict(_TIMES, **({} if inside else _OUT_TIMES))
    time = r.choice(("", "") + tuple(times))
    other_time = times[time]
    gen = r.choice(gens)
    contra, contra_later = r.choice(_CONTRA_ACTIONS)
    other_loc = _LOCS[r.choice([k for k, v in _LOCS.items() if v[2] != inside])][0]
    attr = None
    if group_ok and r.random() < 0.3:
        gphrase, ghyper, gnoun = r.choice(_GROUPS)
        subject, the, pro, pos = gphrase, f"the {gnoun}", "they", "their"
        be = "is" if gnoun in ("couple", "family") else "are"
        refs = [(the, be), (the, be), (ghyper, "are")]
        single = "person" if gnoun in ("couple", "family", "friends") else gnoun[:-1] if gnoun.endswith("s") else "child"
        if gnoun == "men":
            single = "man"
        elif gnoun == "women":
            single = "woman"
        count_slot = ((f"more than one person is {gen}", f"{the} {be} on holiday together", f"{_with_a(single)} is {prog} alone"),
                      (f"{ghyper} are {gen} together", f"{ghyper} are {gen} together for the first time",
                       f"only one person is {gen}"))
        agent_slot = None
    else:
        noun, pro, pos, hypers, contras = r.choice(_AGENTS)
        attr = r.choice(_ATTRS) if r.random() < 0.45 else None
        if attr and "beard" in attr[0] and noun not in ("man", "old man", "young man"):
            attr = _ATTRS[0]
        subject, the, be = _with_a(noun) + (f" {attr[0]}" if attr else ""), f"the {noun}", "is"
        hyper = r.choice(hypers)
        refs = [(the, "is"), (the, "is"), (_with_a(hyper), "is"), ("someone", "is")]
        count_slot = None
        agent_slot = (f"{_with_a(hyper)} is {prog}", f"{_with_a(noun)} is {prog} for {pos} {r.choice(('daughter', 'friend', 'boss', 'neighbour'))}",
                      f"{_with_a(r.choice(contras))} is {prog} {loc}")
    premise = _words(f"{subject} {'are' if be == 'are' else 'is'} {prog} {loc} {time}")
    if r.random() < 0.12:
        premise = f"{r.choice(('in this photo,', 'on the left,', 'in the background,', 'nearby,'))} {premise}"
    x, xbe = r.choice(refs)
    purpose = r.choice(_PURPOSES).format(pos=pos, pro=pro)
    # Every slot is (entailed, neutral, contradicted) built from the same template.
    slots = [
        (f"{x} {xbe} {gen}", f"{x} {xbe} {gen} {purpose}", f"{x} {xbe} {contra}"),
        (f"{the} {be} {prog}", f"{the} {be} {prog} {r.choice(_PURPOSES).format(pos=pos, pro=pro)}", f"{the} {be} not {prog}"),
        (f"{x} {xbe} {loc_gen}", f"{x} {xbe} {loc_gen} {r.choice(('for the first time', 'with ' + pos + ' friends', 'every day') if loc_gen == 'at home' else ('near ' + pos + ' home', 'for the first time', 'with ' + pos + ' friends'))}",
         f"{x} {xbe} {other_loc}"),
        (f"{x} {xbe} {gen} {loc_gen}", f"{x} {xbe} {gen} {purpose}", f"{x} {xbe} {gen} {other_loc}"),
        (f"{x} {xbe} {gen}", f"{x} {xbe} going to {contra_later} later", f"{x} {xbe} {contra} {r.choice(_PURPOSES).format(pos=pos, pro=pro)}"),
        (f"{the} {be} {prog}", f"nobody is watching {the}", f"{the} {be} not {gen}"),
        (f"{the} {be} not {contra}", f"{the} {be} planning to {contra_later} afterwards", f"{the} {be} {contra}"),
        (f"{the} {be} {'indoors' if inside else 'outdoors'}", f"{the} {be} {'indoors' if inside else 'outdoors'} {r.choice(('all day', 'with friends', 'because of the weather', 'for the first time this week'))}",
         f"{the} {be} {'outdoors' if inside else 'indoors'}"),
        (f"{the} {be} not {contra}", f"{the} {be} not {r.choice(_NEUTRAL_NOT)}", f"nobody is {gen}".replace("something", "anything")),
        (f"{the} {be} {gen} {loc_gen}", f"{the} {be} {r.choice(_NEUTRAL_IS) if be == 'is' else 'on holiday'}", f"there is nobody {loc}"),
    ]
    if time:
        slots.append((f"{x} {xbe} {gen} {time}", f"{x} {xbe} {gen} {time} {purpose}", f"{x} {xbe} {gen} {other_time}"))
    if attr:  # twice: attributes are a frequent source of hypotheses
        attr_slot = tuple(f"{the} {part}".format(pos=pos, pro="him" if pro == "he" else "her") for part in attr[1:])
        slots += [attr_slot, attr_slot]
    if count_slot:
        slots += list(count_slot)
    if agent_slot:
        slots.append(agent_slot)
    ent, neu, con = r.choice(slots)
    hyp = {"entailment": ent, "neutral": neu, "contradiction": con}[label]
    return _sentence(premise), _sentence(_words(hyp))


# chores: (base form, past, past participle, 3rd person present)
_CHORES = (
    ("call the plumber", "called the plumber", "called the plumber", "calls the plumber"),
    ("buy groceries", "bought groceries", "bought groceries", "buys groceries"),
    ("pick up the kids from school", "picked up the kids from school", "picked up the kids from school", "picks up the kids from school"),
    ("fix the kitchen sink", "fixed the kitchen sink", "fixed the kitchen sink", "fixes things around the house"),
    ("book the train tickets", "booked the train tickets", "booked the train tickets", "books the train tickets"),
    ("water the plants", "watered the plants", "watered the plants", "waters the plants"),
    ("pay the electricity bill", "paid the electricity bill", "paid the electricity bill", "pays the bills"),
    ("finish the report", "finished the report", "finished the report", "finishes reports late"),
    ("walk the dog", "walked the dog", "walked the dog", "walks the dog"),
    ("clean the garage", "cleaned the garage", "cleaned the garage", "cleans the garage"),
    ("return the library books", "returned the library books", "returned the library books", "returns library books late"),
    ("bake a cake for the party", "baked a cake for the party", "baked a cake for the party", "bakes cakes"),
    ("feed the cat", "fed the cat", "fed the cat", "feeds the cat"),
    ("send the invitations", "sent the invitations", "sent the invitations", "sends invitations"),
    ("wash the car", "washed the car", "washed the car", "washes the car"),
    ("renew the insurance", "renewed the insurance", "renewed the insurance", "renews the insurance"),
    ("reply to the landlord", "replied to the landlord", "replied to the landlord", "replies to the landlord"),
    ("take out the rubbish", "took out the rubbish", "taken out the rubbish", "takes out the rubbish"),
    ("write to grandma", "wrote to grandma", "written to grandma", "writes to grandma"),
)
_MALE_RELS = ("brother", "father", "husband", "son")
_FEMALE_RELS = ("sister", "mother", "wife", "daughter")
_LISTENERS = ("brother", "sister", "mother", "father", "neighbour", "boss", "roommate", "colleague", "husband",
              "wife", "daughter", "son", "friend", "landlord", "teacher")
_SCENES = ("as they waited for the train", "over breakfast", "while they were clearing the table", "on the phone",
           "as they walked home", "in the car", "before leaving for work", "while washing the dishes",
           "at the front door", "in a hurry", "with a laugh", "quietly", "", "", "")
_REMOTE_SCENES = ("on the phone", "in a text message", "in a voice message", "", "")
_WHEN_GROUPS = (("this afternoon", "tonight", "later today", "after lunch"),
                ("tomorrow", "first thing tomorrow", "tomorrow morning"),
                ("next month", "after the summer", "in a few weeks"))
_THINGS = (("spicy food", "spicy dishes"), ("horror films", "scary movies"), ("crowded beaches", "busy beaches"),
           ("jazz", "jazz music"), ("long meetings", "lengthy meetings"), ("flying", "travelling by plane"),
           ("cold weather", "the cold"), ("board games", "playing board games"), ("early mornings", "getting up early"),
           ("shopping malls", "going to the mall"), ("camping", "sleeping in a tent"), ("opera", "opera music"))
_LOST = ("keys", "glasses", "wallet", "phone", "umbrella", "passport", "train ticket", "gloves", "notebook", "watch")
# whereabouts: (quoted place, entailed, contradicted, neutral)
_STUCK = (("stuck in traffic on the bridge", "in traffic", "already at home", "late for dinner"),
          ("still at the office", "at work", "already on the bus", "working overtime for extra pay"),
          ("on the train and will be there in ten minutes", "travelling by train", "driving to the meeting",
           "bringing the documents"),
          ("waiting outside the cinema", "outside the cinema", "inside the cinema already", "waiting for a friend who is late"),
          ("at the supermarket", "at a shop", "at the gym", "buying food for the party"),
          ("still at the dentist", "at the dentist", "at home in bed", "having a tooth pulled"),
          ("in the queue at the post office", "at the post office", "sitting in a restaurant", "sending a parcel abroad"))


def _nli_dialogue(r: _Rng, label: str) -> tuple[str, str]:
    if r.random() < 0.5:
        name, pro, pos = r.choice(_FIRST_F), "she", "her"
    else:
        name, pro, pos = r.choice(_FIRST_M), "he", "his"
    rel = r.choice(_LISTENERS)
    listener = f"{pos} {rel}"
    scene = r.choice(_SCENES)
    kind = r.randrange(5)
    if kind == 0:  # a plan
        base, past, pp, third = r.choice(_CHORES)
        group = r.choice(_WHEN_GROUPS)
        when = r.choice(group)
        other_when = r.choice(r.choice([g for g in _WHEN_GROUPS if g is not group]))
        say = r.choice(("said to", "told", "promised", "assured", "explained to"))
        quote = r.choice((f"I'll {base} {when}", f"don't worry, I'm going to {base} {when}",
                          f"I promise I will {base} {when}", f"I'm planning to {base} {when}"))
        slots = [
            (f"{name} intends to {base}", f"{name} intends to {base} because {pos} {rel} asked", f"{name} does not intend to {base}"),
            (f"{name} said {pro} would {base}", f"{name} will {base} together with {pos} {rel}", f"{name} said {pro} would not {base}"),
            (f"{name} is planning to {base} {when}", f"{name} is planning to {base} {when} before going out", f"{name} is planning to {base} {other_when}"),
            (f"{name} has not {pp} yet", f"{name} usually {third}", f"{name} has already {pp}"),
        ]
    elif kind == 1:  # something already done
        base, past, pp, third = r.choice(_CHORES)
        say = r.choice(("said to", "told", "reminded", "explained to"))
        quote = r.choice((f"I already {past}", f"I {past} this morning", f"relax, I {past} an hour ago",
                          f"I've {pp}, so you don't have to"))
        slots = [
            (f"{name} has {pp}", f"{name} has {pp} twice this week", f"{name} has not {pp} yet"),
            (f"someone {past}", f"{name} {past} with the help of a friend", f"nobody {past}"),
            (f"{name} does not need to {base} now", f"{name} will need to {base} again tomorrow", f"{name} still needs to {base}"),
            (f"{name} {past}", f"{name} {past} because {pos} {rel} asked", f"{name} forgot to {base}"),
        ]
    elif kind == 2:  # likes and dislikes
        thing, syn = r.choice(_THINGS)
        say = r.choice(("said to", "told", "admitted to", "explained to", "confessed to"))
        likes = r.random() < 0.5
        if likes:
            quote = r.choice((f"I absolutely love {thing}", f"nothing beats {thing}", f"I could never get tired of {thing}"))
        else:
            quote = r.choice((f"I can't stand {thing}", f"honestly, I hate {thing}", f"I really don't like {thing}"))
        yes, no = ("enjoys", "dislikes") if likes else ("dislikes", "enjoys")
        fan, not_fan = ("a fan", "not a fan") if likes else ("not a fan", "a fan")
        slots = [
            (f"{name} {yes} {syn}", f"{name} has {'loved' if likes else 'disliked'} {syn} since childhood", f"{name} {no} {syn}"),
            (f"{name} is {fan} of {syn}", f"{pos.capitalize()} {rel} is also {fan} of {syn}", f"{name} is {not_fan} of {syn}"),
            (f"{name} has an opinion about {syn}", f"{name} and {pos} {rel} were arguing about {syn}", f"{name} has no opinion about {syn}"),
        ]
    elif kind == 3:  # a lost item
        item = r.choice(_LOST)
        is_ = "are" if _plural(item) else "is"
        say = r.choice(("said to", "told", "complained to"))
        quote = r.choice((f"I can't find my {item} anywhere", f"have you seen my {item}? I've looked everywhere",
                          f"I think I've lost my {item} again"))
        owned = item if _plural(item) else _with_a(item)
        slots = [
            (f"{name} does not know where {pos} {item} {is_}", f"{name} left {pos} {item} at work", f"{name} knows exactly where {pos} {item} {is_}"),
            (f"{name} is looking for {pos} {item}", f"{name} is looking for {pos} {item} because {pro} is about to leave",
             f"{name} has just found {pos} {item}"),
            (f"{name} owns {owned}", f"{name} owns {'expensive ' + item if _plural(item) else 'an expensive ' + item}", f"{name} has never owned {owned}"),
            (f"{name} has misplaced something", f"{name} loses things all the time", f"{name} has not lost anything"),
        ]
    else:  # whereabouts, told remotely
        where, ent1, con1, neu1 = r.choice(_STUCK)
        scene = r.choice(_REMOTE_SCENES)
        say = r.choice(("said to", "told", "texted", "explained to"))
        if say == "texted":
            scene = ""
        quote = r.choice((f"I'm {where}", f"sorry, I'm {where}", f"just so you know, I'm {where}"))
        slots = [
            (f"{name} is {ent1}", f"{name} is {neu1}", f"{name} is {con1}"),
            (f"{name} is not with {pos} {rel}", f"{pos.capitalize()} {rel} is waiting for {name}", f"{name} is sitting next to {pos} {rel}"),
            (f"{name} told {pos} {rel} where {pro} was", f"{name} told {pos} {rel} that {pro} was sorry about yesterday",
             f"{name} refused to say where {pro} was"),
        ]
    slots.append((f"{name} said something to {pos} {rel}", f"{name} said something to {pos} {rel} that upset {'him' if rel in _MALE_RELS else 'her' if rel in _FEMALE_RELS else 'them'}",
                  f"{name} said nothing to anyone"))
    if r.random() < 0.5:
        premise = f"\"{_cap(quote)},\" {name} {say} {listener} {scene}"
    else:
        premise = f"{name} {say} {listener} {scene}: \"{_cap(quote)}.\""
    premise = _words(premise)
    premise = premise[0].upper() + premise[1:]
    if not premise.endswith(".\""):
        premise += "."
    ent, neu, con = r.choice(slots)
    hyp = {"entailment": ent, "neutral": neu, "contradiction": con}[label]
    return premise, _sentence(hyp)


def _gen_nli(r: _Rng, label: str) -> tuple[str, str]:
    if r.random() < 0.6:
        return _nli_scene(r, label)
    return _nli_dialogue(r, label)


# =========================================================================== registry and loading

TASKS: dict[str, TaskInfo] = {
    "sentiment": TaskInfo(
        "sentiment", "Single-sentence review sentiment, 2 classes (mirrors GLUE SST-2).",
        ("negative", "positive"), False),
    "paraphrase": TaskInfo(
        "paraphrase", "News sentence pairs: is one a paraphrase of the other (mirrors GLUE MRPC).",
        ("not_equivalent", "equivalent"), True),
    "entailment": TaskInfo(
        "entailment", "News-style premise/hypothesis pairs, 2-class entailment (mirrors GLUE RTE).",
        ("entailment", "not_entailment"), True),
    "nli": TaskInfo(
        "nli", "Everyday scenes and dialogue, 3-class inference (mirrors GLUE MNLI).",
        ("entailment", "neutral", "contradiction"), True),
}

_GENERATORS: dict[str, Callable[[_Rng, str], tuple[str, str | None]]] = {
    "sentiment": _gen_sentiment,
    "paraphrase": _gen_paraphrase,
    "entailment": _gen_entailment,
    "nli": _gen_nli,
}


def _did_you_mean(word: str, choices) -> str:
    """probekit's one did-you-mean (errors.did_you_mean), as a sentence after a message."""
    hint = did_you_mean(word, choices)
    return f" {hint[0].upper()}{hint[1:]}" if hint else ""


@functools.lru_cache(maxsize=32)
def _build(name: str, split: str, seed: int) -> tuple[Example, ...]:
    info = TASKS[name]
    generate = _GENERATORS[name]
    taken_pairs: set[tuple[str, str | None]] = set()
    taken_texts: set[str] = set()
    if split != "train":
        for example in _build(name, "train", seed):
            taken_pairs.add((example.text, example.text_pair))
            taken_texts.add(example.text)
    r = random.Random(_derive_seed("probekit.tasks", name, split, seed))
    size = info.sizes[split]
    rows: list[list] = []
    seen: set[tuple[str, str | None]] = set()
    for i in range(size):
        label = info.labels[i % len(info.labels)]
        for _ in range(1000):
            text, pair = generate(r, label)
            key = (text, pair)
            if key not in seen and key not in taken_pairs and text not in taken_texts:
                break
        else:  # pragma: no cover - the generators are far richer than the split sizes
            raise RuntimeError(f"task {name!r}: could not generate {size} distinct examples")
        seen.add(key)
        rows.append([text, pair, label])
    # Deterministic label noise: exactly round(NOISE_RATE * size) labels move to another class.
    for index in sorted(r.sample(range(size), round(NOISE_RATE * size))):
        rows[index][2] = _other(r, info.labels, rows[index][2])
    r.shuffle(rows)
    return tuple(Example(text, pair, label) for text, pair, label in rows)


def load_task(name: str, split: str = "train", *, seed: int = 0) -> list[Example]:
    """Generate the built-in task ``name`` (a key of :data:`TASKS`) for ``split``.

    The examples are shuffled, labels are class names (``TASKS[name].labels``), and
    ``text_pair`` is None for single-sentence tasks.  ``seed`` selects a different but
    equally valid dataset; the same ``(name, split, seed)`` always gives the same list.
    Raises ValueError for an unknown task or split.
    """
    if not isinstance(name, str) or name not in TASKS:
        known = ", ".join(TASKS)
        hint = _did_you_mean(name, TASKS) if isinstance(name, str) else ""
        raise ValueError(f"unknown built-in task {name!r}; known tasks: {known}.{hint}")
    info = TASKS[name]
    if not isinstance(split, str) or split not in info.sizes:
        splits = ", ".join(info.sizes)
        hint = _did_you_mean(split, info.sizes) if isinstance(split, str) else ""
        raise ValueError(f"unknown split {split!r} for task {name!r}; splits: {splits}.{hint}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return list(_build(name, split, int(seed)))
