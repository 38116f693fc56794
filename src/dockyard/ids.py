"""Container IDs, generated names, and resolution of unique ID prefixes."""

from __future__ import annotations

import os
from collections.abc import Iterable

from dockyard.errors import InvalidArgument, NotFound

# A subset of Docker's namesgenerator lists, for names like "eager_turing".
_ADJECTIVES = (
    "admiring adoring affectionate agitated amazing angry awesome beautiful blissful bold "
    "boring brave busy charming clever compassionate competent condescending confident cool "
    "cranky crazy dazzling determined distracted dreamy eager ecstatic elastic elated elegant "
    "eloquent epic exciting fervent festive flamboyant focused friendly frosty funny gallant "
    "gifted goofy gracious great happy hardcore heuristic hopeful hungry infallible inspiring "
    "intelligent interesting jolly jovial keen kind laughing loving lucid magical modest "
    "musing mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful "
    "pedantic pensive practical priceless quirky quizzical recursing relaxed reverent romantic "
    "sad serene sharp silly sleepy stoic strange stupefied suspicious sweet tender thirsty "
    "trusting unruffled upbeat vibrant vigilant vigorous wizardly wonderful xenodochial "
    "youthful zealous zen"
).split()
_SURNAMES = (
    "albattani allen almeida archimedes ardinghelli babbage bardeen bartik bassi bell benz "
    "bhabha bohr booth borg bose boyd brahmagupta brattain brown carson cerf chandrasekhar "
    "clarke colden cori cray curie darwin davinci diffie dijkstra dirac driscoll dubinsky "
    "easley edison einstein elion engelbart euclid euler faraday feistel fermat fermi feynman "
    "franklin gagarin galileo gates gauss goldberg goldstine goodall hamilton hawking heisenberg "
    "hermann hodgkin hoover hopper hugle hypatia jackson jang jennings jepsen johnson joliot "
    "jones kalam kapitsa keller kepler khorana kilby kirch knuth lalande lamarr lamport leakey "
    "leavitt lederberg lehmann lewin lichterman liskov lovelace lumiere mahavira mayer mccarthy "
    "mcclintock mclean mcnulty meitner mendel mendeleev minsky mirzakhani moore morse murdock "
    "napier nash neumann newton nobel noether northcutt noyce panini pare pascal pasteur payne "
    "perlman pike poincare poitras ptolemy raman ramanujan ride ritchie robinson roentgen "
    "rosalind rubin saha sammet shannon shaw shirley shockley sinoussi snyder spence stallman "
    "stonebraker swanson swartz swirles tesla thompson torvalds turing varahamihira visvesvaraya "
    "volhard wescoff wiles williams wilson wing wozniak wright yalow yonath"
).split()


def new_id() -> str:
    """A random 64-hex-digit ID, as Docker's."""
    return os.urandom(32).hex()


def random_name() -> str:
    return f"{_pick(_ADJECTIVES)}_{_pick(_SURNAMES)}"


def short_id(full_id: str) -> str:
    """The 12-digit form shown by ``ps`` and ``images``."""
    return full_id.removeprefix("sha256:")[:12]


_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def validate_container_name(name: str) -> str:
    """Docker's rule: ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``; a leading ``/`` is accepted."""
    bare = name.removeprefix("/")
    if len(bare) < 2 or not bare[0].isalnum() or not set(bare) <= _NAME_CHARS:
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return bare


def resolve_prefix(ref: str, ids: Iterable[str], kind: str) -> str:
    """The one full ID that ``ref`` is a prefix of, or a clear error."""
    bare = ref.removeprefix("sha256:")
    matches = [i for i in ids if i.removeprefix("sha256:").startswith(bare)]
    if not matches or not bare:
        raise NotFound(f"No such {kind}: {ref}")
    if len(matches) > 1:
        raise InvalidArgument(f"multiple {kind}s found with provided prefix: {ref}")
    return matches[0]


def _pick(words: tuple[str, ...] | list[str]) -> str:
    return words[int.from_bytes(os.urandom(4), "big") % len(words)]
