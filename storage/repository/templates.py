"""Template versions: stored once under the next free name of their task, never edited in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from storage.errors import StorageError
from storage.models import TemplateVersion, utcnow
from storage.repository.base import RepositoryBase

# Tries at the next name when other moderators' versions of the task take it first.
NAME_TRIES = 10


class TemplatesRepository(RepositoryBase):
    async def create_template_version(
        self, *, task: str, name_for: Callable[[int], str], system_prompt: str, template: str,
        brand_voice: dict[str, Any], created_by: str,
    ) -> TemplateVersion:
        """Store a version under `name_for(number of the task's stored versions)`, in one transaction.

        Two moderators saving at once may compute the same name: the unique name refuses the second
        insert, which tries again with the count it reads then.
        """
        for _ in range(NAME_TRIES):
            try:
                async with self._sessions.begin() as session:
                    stored = await session.scalar(select(func.count()).select_from(TemplateVersion)
                                                  .where(TemplateVersion.task == task)) or 0
                    version = TemplateVersion(task=task, name=name_for(stored), system_prompt=system_prompt,
                                              template=template, brand_voice=brand_voice, created_by=created_by,
                                              created_at=utcnow())
                    session.add(version)
                return version
            except IntegrityError:
                continue
        raise StorageError(f"could not find a free name for a new {task} template version after {NAME_TRIES} tries; "
                           "please save it again")

    async def template_version(self, name: str) -> TemplateVersion | None:
        async with self._sessions() as session:
            return await session.scalar(select(TemplateVersion).where(TemplateVersion.name == name))

    async def template_versions(self, task: str | None = None) -> list[TemplateVersion]:
        """Oldest first; every task's unless `task` is given."""
        query = select(TemplateVersion).order_by(TemplateVersion.task, TemplateVersion.id)
        if task is not None:
            query = query.where(TemplateVersion.task == task)
        async with self._sessions() as session:
            return list(await session.scalars(query))
