"""What the engine holds, read for people and tools: every campaign with its
versions and how many people are where in each (`cadence campaigns`).

Read-only; the models are the JSON that commands print.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel
from sqlalchemy import case, exists, func, select

from cadence.runtime.schema import actions, campaigns, enrollments
from cadence.runtime.store import Store

# An action still to do: the enrollment has not run to its end.
_LEFT = ("pending", "open", "claimed", "unconfirmed")


class VersionOverview(BaseModel):
    version: int
    key: str  # the sha256 of what the version does
    name: str
    created_at: dt.datetime
    ended_at: dt.datetime | None
    active: int  # people with steps still to come
    finished: int  # people who went through every step
    ended: int  # people whose enrollment ended early: replied, bounced, removed…


class CampaignOverview(BaseModel):
    name: str  # the latest version's
    id: str  # its identity: the `id` setting, else the name
    created_at: dt.datetime
    ended_at: dt.datetime | None
    versions: list[VersionOverview]


def campaign_overviews(store: Store) -> list[CampaignOverview]:
    """Every campaign, by name, with its versions in order."""
    left = exists().where(actions.c.enrollment_id == enrollments.c.id, actions.c.status.in_(_LEFT))
    is_active = enrollments.c.status == "active"
    counts = (
        select(
            enrollments.c.campaign_id,
            func.sum(case((is_active & left, 1), else_=0)).label("active"),
            func.sum(case((is_active & ~left, 1), else_=0)).label("finished"),
            func.sum(case((~is_active, 1), else_=0)).label("ended"),
        )
        .group_by(enrollments.c.campaign_id)
        .subquery()
    )
    query = (
        select(
            campaigns.c.id,
            campaigns.c.name,
            campaigns.c.identity,
            campaigns.c.version,
            campaigns.c.created_at,
            campaigns.c.ended_at,
            counts.c.active,
            counts.c.finished,
            counts.c.ended,
        )
        .outerjoin(counts, counts.c.campaign_id == campaigns.c.id)
        .order_by(campaigns.c.identity, campaigns.c.version, campaigns.c.created_at)
    )
    grouped: dict[str, list[VersionOverview]] = {}
    with store.read() as connection:
        for row in connection.execute(query):
            grouped.setdefault(row.identity, []).append(
                VersionOverview(
                    version=row.version,
                    key=row.id,
                    name=row.name,
                    created_at=row.created_at,
                    ended_at=row.ended_at,
                    active=int(row.active or 0),
                    finished=int(row.finished or 0),
                    ended=int(row.ended or 0),
                )
            )
    overviews = [
        CampaignOverview(
            name=versions[-1].name,
            id=identity,
            created_at=versions[0].created_at,
            ended_at=versions[-1].ended_at,
            versions=versions,
        )
        for identity, versions in grouped.items()
    ]
    return sorted(overviews, key=lambda found: (found.name.casefold(), found.id))
