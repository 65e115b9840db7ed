"""Looking into the states of an ``ais_wds.Mix`` in tests: its part states inside a loader's state, and which
source epoch each sample a loader yields came from."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple


def walk(tree: Any) -> Iterator[Any]:
    """Every dict, list and value inside ``tree`` (a loader's state_dict)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)


def mix_parts(tree: Any) -> List[Dict[str, Any]]:
    """The mix part states (one per DataLoader worker) inside ``tree``."""
    return [v for v in walk(tree) if isinstance(v, dict) and v.get("kind") == "ais_wds.mix"]


def read_with_epochs(loader: Any, source_of: Callable[[Any], int], limit: Optional[int] = None
                     ) -> Tuple[List[Tuple[Any, int]], Dict[str, Any]]:
    """``(item, epoch of its source)`` for each item a ``StatefulDataLoader(mix, batch_size=None)`` yields
    (at most ``limit``), and the loader's state after the last one. ``source_of(item)``: the item's
    source number. The worker that yielded an item is the one whose positions advanced (its state
    travels with each item); its state then names the epoch its source is in."""
    it = iter(loader)
    out: List[Tuple[Any, int]] = []
    seen: Dict[int, Any] = {}
    state: Dict[str, Any] = {}
    while limit is None or len(out) < limit:
        try:
            item = next(it)
        except StopIteration:
            break
        state = loader.state_dict()
        parts = {int(p["positions"]["worker"]): p for p in mix_parts(state)}
        if len(out) < len(parts):  # each worker's first item: in turn, from worker 0
            moved = [len(out)]
        else:
            moved = [w for w, p in parts.items() if seen[w] != p["positions"]["progress"]]
        assert len(moved) == 1, (len(out), moved)
        part = parts[moved[0]]
        seen[moved[0]] = part["positions"]["progress"]
        out.append((item, int(part["sources"][source_of(item)]["state"]["epoch"])))
    return out, state
