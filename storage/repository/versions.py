"""Model versions: registered once trained and verified, then served, replaced, retired."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from storage.errors import StorageError, VersionNotFound
from storage.models import BASE_VERSION, ModelVersion, VersionState, utcnow
from storage.repository.base import RepositoryBase


class VersionsRepository(RepositoryBase):
    async def register_version(self, **facts: Any) -> ModelVersion:
        """Add a trained version as a candidate; a name is used once, ever (retired ones keep theirs)."""
        if facts["name"] == BASE_VERSION:
            raise StorageError(f"{BASE_VERSION!r} names the model without an adapter; choose another name")
        async with self._sessions.begin() as session:
            if await session.scalar(select(ModelVersion.id).where(ModelVersion.name == facts["name"])) is not None:
                raise StorageError(f"a model version named {facts['name']!r} exists already; choose another name")
            now = utcnow()
            version = ModelVersion(**facts, state=VersionState.CANDIDATE, created_at=now, state_changed_at=now)
            session.add(version)
        return version

    async def versions(self) -> list[ModelVersion]:
        async with self._sessions() as session:
            return list(await session.scalars(select(ModelVersion).order_by(ModelVersion.id)))

    async def version(self, name: str) -> ModelVersion:
        async with self._sessions() as session:
            version = await session.scalar(select(ModelVersion).where(ModelVersion.name == name))
        if version is None:
            raise VersionNotFound(name)
        return version

    async def serving_version(self) -> str:
        """The version new drafts go to: the one marked serving, else the base model."""
        async with self._sessions() as session:
            name = await session.scalar(select(ModelVersion.name).where(ModelVersion.state == VersionState.SERVING))
        return name or BASE_VERSION

    async def serve_version(self, name: str) -> None:
        """Make `name` the one serving version (`base`: no adapter); the one it replaces becomes a candidate."""
        async with self._sessions.begin() as session:
            if name != BASE_VERSION:
                state = await session.scalar(select(ModelVersion.state).where(ModelVersion.name == name))
                if state is None:
                    raise VersionNotFound(name)
                if state == VersionState.RETIRED:
                    raise StorageError(f"model version {name!r} is retired and cannot be served again")
            now = utcnow()
            await session.execute(update(ModelVersion).where(ModelVersion.state == VersionState.SERVING)
                                  .values(state=VersionState.CANDIDATE, state_changed_at=now))
            if name != BASE_VERSION:
                await session.execute(update(ModelVersion).where(ModelVersion.name == name)
                                      .values(state=VersionState.SERVING, state_changed_at=now))

    async def retire_version(self, name: str) -> None:
        """Retire a version that does not serve; its row and folder stay, for the drafts it wrote."""
        async with self._sessions.begin() as session:
            state = await session.scalar(select(ModelVersion.state).where(ModelVersion.name == name))
            if state is None:
                raise VersionNotFound(name)
            if state == VersionState.SERVING:
                raise StorageError(f"model version {name!r} is serving; serve another one first "
                                   f"(`copydesk models serve {BASE_VERSION}` goes back to the base model)")
            await session.execute(update(ModelVersion).where(ModelVersion.name == name)
                                  .values(state=VersionState.RETIRED, state_changed_at=utcnow()))
