"""The provider/model catalog in the adapter's own database, with a short in-memory cache for hot paths.

PollTask is the adapter's hot path, so resolving a model to its provider, parsed profile, parsed
template and decrypted key is cached for a few seconds. The cache forgets everything on a local
change and expires, so a change made through another replica takes effect within ``cache_ttl``
seconds. Lookups that find nothing are never cached. Calls that miss the cache together (the tasks of
one PollTasks batch) share one lookup, and a profile whose text did not change is not parsed and
validated again, so what is derived from it (poll policy, limits) is computed once. A lookup runs in
a task of its own that outlives a caller who goes away; :meth:`Catalog.aclose` cancels those still
running at shutdown.

Longer than our usual module on purpose: every write to providers and models must invalidate the
same cache and pass the same destination and key checks (:mod:`egress`, :mod:`key_binding`), which
is easiest to see when they sit together.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from assetgen_provider_adapter.credentials import (
    Credential,
    KeyReferences,
    SecretBox,
    SecretUnreadable,
    check_parts,
    open_credential,
    seal_parts,
)
from assetgen_provider_adapter.db import ModelRow, ProviderKeyRow, ProviderRow, utcnow
from assetgen_provider_adapter.egress import ProviderEgress
from assetgen_provider_adapter.engine import ProviderTarget
from assetgen_provider_adapter.key_binding import KeyRefAllowList, check_destination_change
from assetgen_provider_adapter.key_pool import sync_own_key
from assetgen_provider_adapter.placeholders import check_key_shape, check_model, submit_variables
from assetgen_provider_adapter.pricing import Price, PriceError, check_price_json
from assetgen_provider_adapter.profiles import Profile, ProfileError, load_presets
from assetgen_provider_adapter.templates import TemplateVariables
from assetgen_runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from assetgen_runtime.ids import new_id

__all__ = ["Catalog", "ResolvedModel"]

logger = logging.getLogger(__name__)

# Model types of common.proto: IMAGE and VIDEO.
_MODEL_TYPES = frozenset({1, 2})
_MAX_NAME = 200

# Providers' profiles by their stored text: a refresh of the resolution cache reuses the parsed one.
_profile_of = lru_cache(maxsize=256)(Profile.from_json)


@dataclass(frozen=True)
class ResolvedModel:
    """A model with everything a submit or poll needs, parsed once."""

    model: ModelRow
    provider: ProviderRow
    target: ProviderTarget
    template: Any
    variables: TemplateVariables
    price: Price | None = None


def _check_name(kind: str, name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidArgument(f"{kind} name is required")
    if len(name) > _MAX_NAME:
        raise InvalidArgument(f"{kind} name is longer than {_MAX_NAME} characters")
    return name


def _check_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"base_url must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


def _check_template(request_schema_json: str) -> str:
    """The template as compact JSON text; it must be a JSON object or a non-empty array of objects."""
    try:
        template = json.loads(request_schema_json)
    except ValueError as exc:
        raise InvalidArgument(f"request_schema_json is not JSON: {exc}") from None
    if not isinstance(template, dict | list):
        raise InvalidArgument("request_schema_json must be a JSON object or array")
    # An array body is a batch of request objects; [null, null] or [] would be sent as it is.
    if isinstance(template, list) and not (template and all(isinstance(item, dict) for item in template)):
        raise InvalidArgument("request_schema_json as an array must hold one or more JSON objects")
    return json.dumps(template, separators=(",", ":"), ensure_ascii=False)


def _check_price(price_json: str) -> str:
    try:
        return check_price_json(price_json)
    except PriceError as exc:
        raise InvalidArgument(str(exc)) from None


def _check_max_concurrency(value: int) -> None:
    if value < 0:
        raise InvalidArgument("max_concurrency must be 0 (no limit) or more")


def _check_endpoint(api_endpoint: str) -> str:
    api_endpoint = api_endpoint.strip()
    if api_endpoint and not api_endpoint.startswith(("/", "http://", "https://")):
        raise InvalidArgument("api_endpoint must be a path starting with '/' or an http(s) URL")
    return api_endpoint


class Catalog:
    """Providers and models: creation with validation, lookups by id or unique name, resolution."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        *,
        cache_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        references: KeyReferences | None = None,
        egress: ProviderEgress | None = None,
        key_ref_allowlist: KeyRefAllowList | None = None,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._references = references
        self._egress = egress
        self._key_refs = key_ref_allowlist or KeyRefAllowList()
        self._ttl = cache_ttl
        self._clock = clock
        self._resolved: dict[str, tuple[float, ResolvedModel]] = {}
        self._loading: dict[str, asyncio.Task[ResolvedModel]] = {}
        self._lookups: set[asyncio.Task[ResolvedModel]] = set()
        self._generation = 0

    async def aclose(self) -> None:
        """Cancels lookups still running (at shutdown), so none outlives the database it reads."""
        lookups = list(self._lookups)
        for lookup in lookups:
            lookup.cancel()
        await asyncio.gather(*lookups, return_exceptions=True)

    def invalidate(self) -> None:
        """Forgets every cached resolution (after a local change), and lookups under way."""
        self._resolved.clear()
        self._loading.clear()
        self._generation += 1

    # -- providers ------------------------------------------------------------------------

    async def create_provider(
        self,
        name: str,
        preset: str,
        base_url: str,
        api_key: str,
        profile_json: str = "",
        api_key_ref: str = "",
        api_key_parts: Mapping[str, str] | None = None,
        max_concurrency: int = 0,
    ) -> ProviderRow:
        """Adds a provider from a preset or a full inline profile; the key (one part, or named
        ``api_key_parts``) is stored encrypted, and is the first key of its pool.

        An invalid profile, or a key without what its auth uses, is refused with the validation
        message, before anything is written.
        """
        name = _check_name("provider", name)
        _check_max_concurrency(max_concurrency)
        if bool(preset) == bool(profile_json.strip()):
            raise InvalidArgument("give exactly one of preset and profile")
        if sum(map(bool, (api_key, api_key_ref, api_key_parts))) > 1:
            raise InvalidArgument("give at most one of api_key, api_key_ref and api_key parts")
        parts = check_parts(api_key_parts) if api_key_parts else None
        if api_key_ref:
            api_key_ref = KeyReferences.check(api_key_ref)
        if profile_json.strip():
            try:
                profile = Profile.from_json(profile_json)
            except ProfileError as exc:
                raise InvalidArgument(str(exc)) from None
        else:
            found = load_presets().get(preset)
            if found is None:
                known = ", ".join(sorted(load_presets()))
                raise InvalidArgument(f"unknown preset {preset!r}; known presets: {known}")
            profile = found
        if not (base_url or profile.base_url):
            raise InvalidArgument("base_url is required: the profile names none")
        checked_base_url = _check_base_url(base_url or profile.base_url)
        await self._check_destinations(checked_base_url, profile)
        if api_key or api_key_ref or parts:
            check_key_shape(profile.data, parts=None if parts is None else list(parts))
        now = utcnow()
        row = ProviderRow(
            id=new_id("prv"),
            name=name,
            preset=preset,
            base_url=checked_base_url,
            profile_json=json.dumps(profile.data, separators=(",", ":")),
            api_key_encrypted=self._seal(api_key, parts),
            api_key_ref=api_key_ref,
            created_at=now,
            updated_at=now,
            max_concurrency=max_concurrency,
        )
        async with self._sessions() as session:
            if await self._find_provider(session, name) is not None:
                raise AlreadyExists(f"provider {name!r} already exists")
            if api_key_ref:
                await self._check_key_ref(session, api_key_ref, name, own_id=row.id)
            session.add(row)
            await session.flush()  # the provider row first: its own pool key refers to it
            await sync_own_key(session, row, rotated=False)
            try:
                await session.commit()
            except IntegrityError:
                raise AlreadyExists(f"provider {name!r} already exists") from None
        self.invalidate()
        logger.info("provider created", extra={"provider": name, "preset": preset})
        return row

    async def update_provider(
        self,
        ref: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_ref: str | None = None,
        profile_json: str | None = None,
        preset: str | None = None,
        api_key_parts: Mapping[str, str] | None = None,
        max_concurrency: int | None = None,
    ) -> ProviderRow:
        """Changes the given fields of a provider; an invalid profile changes nothing. A new key
        rotates the provider's own pool key (:func:`key_pool.sync_own_key`)."""
        if max_concurrency is not None:
            _check_max_concurrency(max_concurrency)
        if sum(value is not None for value in (api_key, api_key_ref, api_key_parts)) > 1:
            raise InvalidArgument("give at most one of api_key, api_key_ref and api_key parts")
        parts = check_parts(api_key_parts) if api_key_parts is not None else None
        if profile_json is not None and preset is not None:
            raise InvalidArgument("give at most one of preset and profile")
        profile: Profile | None = None
        if profile_json is not None:
            try:
                profile = Profile.from_json(profile_json)
            except ProfileError as exc:
                raise InvalidArgument(str(exc)) from None
        elif preset is not None:
            profile = load_presets().get(preset)
            if profile is None:
                raise InvalidArgument(
                    f"unknown preset {preset!r}; known presets: {', '.join(sorted(load_presets()))}"
                )
        new_base_url = _check_base_url(base_url) if base_url is not None else None
        if new_base_url is not None or profile is not None:
            await self._check_destinations(new_base_url, profile)
        async with self._sessions() as session:
            row = await self._find_provider(session, ref)
            if row is None:
                raise NotFound(f"provider {ref!r} not found")
            if profile is not None:
                # The models it serves must still make whole tasks with the new profile.
                models = await session.scalars(select(ModelRow).where(ModelRow.provider_id == row.id))
                for model in models:
                    try:
                        check_model(profile.data, json.loads(model.request_schema_json), model.api_endpoint)
                    except InvalidArgument as exc:
                        raise InvalidArgument(f"model {model.name!r}: {exc}") from None
            check_destination_change(
                has_key=bool(row.api_key_encrypted or row.api_key_ref),
                key_given=api_key is not None or api_key_ref is not None or parts is not None,
                old_base_url=row.base_url,
                new_base_url=new_base_url or row.base_url,
                old_key_hosts=_profile_of(row.profile_json).auth.hosts,
                new_key_hosts=(profile or _profile_of(row.profile_json)).auth.hosts,
            )
            if api_key_ref:
                await self._check_key_ref(session, KeyReferences.check(api_key_ref), row.name, own_id=row.id)
            if new_base_url is not None:
                row.base_url = new_base_url
            if profile is not None:
                row.profile_json = json.dumps(profile.data, separators=(",", ":"))
                row.preset = preset or ""
            self._check_key_shape_after_update(row, profile, api_key, api_key_ref, parts)
            if api_key is not None or parts is not None:
                row.api_key_encrypted = self._seal(api_key, parts)
                row.api_key_ref = ""
            if api_key_ref is not None:
                row.api_key_ref = KeyReferences.check(api_key_ref) if api_key_ref else ""
                row.api_key_encrypted = None
            if max_concurrency is not None:
                row.max_concurrency = max_concurrency
            key_given = api_key is not None or api_key_ref is not None or parts is not None
            if key_given:
                await sync_own_key(session, row, rotated=True)
            row.updated_at = utcnow()
            await session.commit()
            await session.refresh(row)
        self.invalidate()
        logger.info("provider updated", extra={"provider": row.name})
        return row

    def _seal(self, api_key: str | None, parts: Mapping[str, str] | None) -> str | None:
        """The ciphertext of a key given as one string or as named parts; None for no key."""
        if parts:
            return self._box.encrypt(seal_parts(parts))
        return self._box.encrypt(api_key) if api_key else None

    def _check_key_shape_after_update(
        self,
        row: ProviderRow,
        profile: Profile | None,
        api_key: str | None,
        api_key_ref: str | None,
        parts: Mapping[str, str] | None,
    ) -> None:
        """The key (given now, or stored) must have what the (new) profile's auth uses."""
        if profile is None and api_key is None and api_key_ref is None and parts is None:
            return
        data = (profile or _profile_of(row.profile_json)).data
        if parts is not None:
            check_key_shape(data, parts=list(parts))
        elif api_key or api_key_ref:
            check_key_shape(data, parts=None)
        elif api_key is None and api_key_ref is None and row.api_key_encrypted:
            try:
                stored = open_credential(self._box.decrypt(row.api_key_encrypted))
            except SecretUnreadable:
                return  # checked again when the key is given anew; resolving says what is wrong
            check_key_shape(data, parts=list(stored.parts) if stored.parts else None)
        elif api_key is None and api_key_ref is None and row.api_key_ref:
            check_key_shape(data, parts=None)

    async def delete_provider(self, ref: str) -> None:
        """Deletes a provider; FailedPrecondition while models still use it."""
        async with self._sessions() as session:
            row = await self._find_provider(session, ref)
            if row is None:
                raise NotFound(f"provider {ref!r} not found")
            used = await session.scalar(select(ModelRow.name).where(ModelRow.provider_id == row.id).limit(1))
            if used is not None:
                raise FailedPrecondition(
                    f"provider {row.name!r} still has models (e.g. {used!r}); delete them first"
                )
            for key in await session.scalars(
                select(ProviderKeyRow).where(ProviderKeyRow.provider_id == row.id)
            ):
                await session.delete(key)
            await session.flush()  # its keys go before it (they refer to it)
            await session.delete(row)
            await session.commit()
        self.invalidate()
        logger.info("provider deleted", extra={"provider": row.name})

    async def _check_destinations(self, base_url: str | None, profile: Profile | None) -> None:
        """Refuses a base URL or key hosts that provider calls may not reach (see :mod:`egress`)."""
        if self._egress is None:
            return
        if base_url is not None:
            await self._egress.check_url("base_url", base_url)
        if profile is not None:
            self._egress.check_key_hosts("auth.hosts", profile.auth.hosts)

    async def _check_key_ref(
        self, session: AsyncSession, reference: str, provider: str, *, own_id: str
    ) -> None:
        users = await session.scalars(
            select(ProviderRow.name).where(ProviderRow.api_key_ref == reference, ProviderRow.id != own_id)
        )
        self._key_refs.check(reference, provider, list(users))

    @staticmethod
    async def _find_provider(session: AsyncSession, ref: str) -> ProviderRow | None:
        result = await session.execute(
            select(ProviderRow).where(or_(ProviderRow.id == ref, ProviderRow.name == ref))
        )
        return result.scalars().first()

    async def get_provider(self, ref: str) -> ProviderRow:
        """A provider by id or name; NotFound otherwise."""
        async with self._sessions() as session:
            row = await self._find_provider(session, ref)
        if row is None:
            raise NotFound(f"provider {ref!r} not found")
        return row

    async def list_providers(self) -> list[ProviderRow]:
        """Every provider, by name."""
        async with self._sessions() as session:
            result = await session.execute(select(ProviderRow).order_by(ProviderRow.name))
            return list(result.scalars())

    # -- models ---------------------------------------------------------------------------

    async def create_model(
        self,
        provider_ref: str,
        name: str,
        model_type: int,
        api_endpoint: str,
        request_schema_json: str,
        price_json: str = "",
    ) -> tuple[ModelRow, ProviderRow]:
        """Adds a model; its template must be a JSON object or array, its price valid (``pricing``)."""
        name = _check_name("model", name)
        if model_type not in _MODEL_TYPES:
            raise InvalidArgument("model_type must be MODEL_TYPE_IMAGE or MODEL_TYPE_VIDEO")
        template_text = _check_template(request_schema_json)
        price_text = _check_price(price_json)
        api_endpoint = _check_endpoint(api_endpoint)
        await self._check_endpoint_destination(api_endpoint)
        now = utcnow()
        async with self._sessions() as session:
            provider = await self._find_provider(session, provider_ref)
            if provider is None:
                raise NotFound(f"provider {provider_ref!r} not found")
            check_model(_profile_of(provider.profile_json).data, json.loads(template_text), api_endpoint)
            if await self._find_model(session, name) is not None:
                raise AlreadyExists(f"model {name!r} already exists")
            row = ModelRow(
                id=new_id("mdl"),
                name=name,
                provider_id=provider.id,
                model_type=model_type,
                api_endpoint=api_endpoint,
                request_schema_json=template_text,
                price_json=price_text,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                raise AlreadyExists(f"model {name!r} already exists") from None
        self.invalidate()
        logger.info("model created", extra={"model": name, "provider": provider.name})
        return row, provider

    async def update_model(
        self,
        ref: str,
        *,
        model_type: int | None = None,
        api_endpoint: str | None = None,
        request_schema_json: str | None = None,
        price_json: str | None = None,
    ) -> tuple[ModelRow, ProviderRow]:
        """Changes the given fields of a model, checked as on creation."""
        price_text = _check_price(price_json) if price_json is not None else None
        if model_type is not None and model_type not in _MODEL_TYPES:
            raise InvalidArgument("model_type must be MODEL_TYPE_IMAGE or MODEL_TYPE_VIDEO")
        template_text = _check_template(request_schema_json) if request_schema_json is not None else None
        endpoint = _check_endpoint(api_endpoint) if api_endpoint is not None else None
        if endpoint is not None:
            await self._check_endpoint_destination(endpoint)
        async with self._sessions() as session:
            row = await self._find_model(session, ref)
            provider = await session.get(ProviderRow, row.provider_id) if row else None
            if row is None or provider is None:
                raise NotFound(f"model {ref!r} not found")
            check_model(
                _profile_of(provider.profile_json).data,
                json.loads(template_text if template_text is not None else row.request_schema_json),
                endpoint if endpoint is not None else row.api_endpoint,
            )
            if model_type is not None:
                row.model_type = model_type
            if endpoint is not None:
                row.api_endpoint = endpoint
            if template_text is not None:
                row.request_schema_json = template_text
            if price_text is not None:
                row.price_json = price_text
            row.updated_at = utcnow()
            await session.commit()
            await session.refresh(row)
        self.invalidate()
        logger.info("model updated", extra={"model": row.name})
        return row, provider

    async def delete_model(self, ref: str) -> None:
        """Deletes a model; assets made with it keep their files."""
        async with self._sessions() as session:
            row = await self._find_model(session, ref)
            if row is None:
                raise NotFound(f"model {ref!r} not found")
            await session.delete(row)
            await session.commit()
        self.invalidate()
        logger.info("model deleted", extra={"model": row.name})

    async def _check_endpoint_destination(self, api_endpoint: str) -> None:
        if self._egress is not None and api_endpoint.startswith(("http://", "https://")):
            await self._egress.check_url("api_endpoint", api_endpoint)

    @staticmethod
    async def _find_model(session: AsyncSession, ref: str) -> ModelRow | None:
        result = await session.execute(select(ModelRow).where(or_(ModelRow.id == ref, ModelRow.name == ref)))
        return result.scalars().first()

    async def get_model(self, ref: str) -> tuple[ModelRow, ProviderRow]:
        """A model and its provider by model id or name; NotFound otherwise."""
        async with self._sessions() as session:
            model = await self._find_model(session, ref)
            provider = await session.get(ProviderRow, model.provider_id) if model else None
        if model is None or provider is None:
            raise NotFound(f"model {ref!r} not found")
        return model, provider

    async def list_models(self, provider_ref: str = "") -> list[tuple[ModelRow, ProviderRow]]:
        """Every model (of one provider, when given) with its provider, by name."""
        async with self._sessions() as session:
            query = select(ModelRow, ProviderRow).join(ProviderRow, ModelRow.provider_id == ProviderRow.id)
            if provider_ref:
                provider = await self._find_provider(session, provider_ref)
                if provider is None:
                    raise NotFound(f"provider {provider_ref!r} not found")
                query = query.where(ModelRow.provider_id == provider.id)
            result = await session.execute(query.order_by(ModelRow.name))
            return [(model, provider) for model, provider in result.all()]

    # -- resolution for calls -------------------------------------------------------------

    async def resolve(self, ref: str) -> ResolvedModel:
        """A model ready for a submit or poll, cached briefly; InvalidArgument for an unknown model."""
        cached = self._resolved.get(ref)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        loading = self._loading.get(ref)
        if loading is None:
            loading = self._loading[ref] = asyncio.create_task(self._load(ref, self._generation))
            self._lookups.add(loading)
            loading.add_done_callback(lambda done: self._loaded(ref, done))
        # Shielded: a caller that goes away must not cancel the lookup the others wait for.
        return await asyncio.shield(loading)

    def _loaded(self, ref: str, done: asyncio.Task[ResolvedModel]) -> None:
        self._lookups.discard(done)
        if self._loading.get(ref) is done:
            del self._loading[ref]
        if not done.cancelled():
            done.exception()  # retrieved here, so an error nobody waited for is not logged as lost

    async def _load(self, ref: str, generation: int) -> ResolvedModel:
        try:
            model, provider = await self.get_model(ref)
        except NotFound:
            raise InvalidArgument(f"unknown model {ref!r}") from None
        if self._egress is not None:
            # A host list set after the provider was stored applies to its calls too.
            self._egress.check_host_allowed("base_url", urlsplit(provider.base_url).hostname or "")
        template = json.loads(model.request_schema_json)
        try:
            credential = (
                open_credential(self._box.decrypt(provider.api_key_encrypted))
                if provider.api_key_encrypted
                else Credential()
            )
            if provider.api_key_ref and self._references is not None:
                credential = Credential(secret=self._references.read(provider.api_key_ref))
        except SecretUnreadable:
            raise FailedPrecondition(
                f"the API key of provider {provider.name!r} cannot be decrypted; "
                "was ASSETGEN_SECRET_KEY changed since it was stored?"
            ) from None
        profile = _profile_of(provider.profile_json)
        resolved = ResolvedModel(
            model=model,
            provider=provider,
            target=ProviderTarget(
                name=provider.name,
                base_url=provider.base_url,
                profile=profile,
                api_key=credential.secret,
                key_parts=credential.parts,
            ),
            template=template,
            variables=submit_variables(profile.data, template, model.api_endpoint),
            price=Price.parse(json.loads(model.price_json)) if model.price_json else None,
        )
        if generation == self._generation:  # not when a local change happened meanwhile
            self._resolved[ref] = (self._clock() + self._ttl, resolved)
        return resolved
