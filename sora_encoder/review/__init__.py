"""For people's tools: what a reviewer looks at and what an editor opens, made from matches
(a query's range beside a target's range, with the score), with no service behind them.

    matches.py        Match / Side: the plain data the rest takes (the CLI fills it from hits)
    contact_sheet.py  stills of the query beside the target at aligned times (Pillow)
    timeline.py       OpenTimelineIO timeline (and CMX 3600 EDL) of the matched ranges
    html_report.py    a static duplicate report: index.html + the strips, no server
"""

from sora_encoder.review.matches import Match, Side

__all__ = ["Match", "Side"]
