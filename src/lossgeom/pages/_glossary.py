"""The Report's field glossary, read from ``lossgeom.report``'s docstring (its one source)."""

from __future__ import annotations

from .. import report as _report_module
from ._html import rst

__all__ = ["glossary", "glossary_html"]


def _glossary_parts() -> tuple[str, list[tuple[str, str]], list[str]]:
    """(heading, [(term, text)], closing notes) parsed from ``lossgeom.report``'s docstring.

    The docstring holds a line starting "Field glossary", a blank line, bullets ("* term: text",
    continued on indented lines) and closing paragraphs.

    Raises:
        RuntimeError: If the docstring lost its glossary (a packaging error, not a user's).
    """
    lines = (_report_module.__doc__ or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Field glossary")), None)
    if start is None:
        raise RuntimeError("lossgeom.report's docstring lost its 'Field glossary' section; the "
                           "pages read the field glossary from there. Restore it.")
    heading = lines[start].rstrip(":")
    bullets: list[list[str]] = []
    notes: list[list[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("* ") and not notes:
            bullets.append([line[2:].strip()])
        elif line.startswith("  ") and line.strip() and bullets and not notes:
            bullets[-1].append(line.strip())
        elif line.strip() and bullets:
            if not notes or not notes[-1]:
                notes.append([])
            notes[-1].append(line.strip())
        elif not line.strip() and notes:
            notes.append([])
    entries = []
    for parts in bullets:
        term, _, text = " ".join(parts).partition(": ")
        entries.append((term, text))
    paragraphs = [" ".join(n) for n in notes if n]
    return heading, entries, paragraphs


def glossary() -> list[tuple[str, str]]:
    """The Report's field glossary as (term, text) pairs, read from ``lossgeom.report``'s docstring.

    One source of truth: the docstring that ``help(lossgeom.report)`` shows is the text the pages
    print. Terms and texts keep their ````literal```` markup.

    Returns:
        One pair per bullet of the glossary, in its order.

    Example:
        >>> glossary()[0][0]
        '``n_params``, ``n_samples``, ``n_outputs``'
    """
    return _glossary_parts()[1]


def glossary_html() -> str:
    heading, entries, notes = _glossary_parts()
    items = "\n".join(f"<dt>{rst(term)}</dt><dd>{rst(text)}</dd>" for term, text in entries)
    return (f"<h2 id=\"glossary\">Glossary</h2>\n<p class=\"sub\">{rst(heading)}.</p>\n"
            f"<dl>\n{items}\n</dl>\n" + "".join(f"<p>{rst(n)}</p>" for n in notes))
