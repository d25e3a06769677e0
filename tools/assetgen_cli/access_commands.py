"""The CLI's commands for projects and API keys (admin): ``assetgen projects …`` and ``assetgen keys …``.

A new key's secret is printed once, alone on stdout (``KEY=$(assetgen keys create …)``), its
details on stderr; it cannot be shown again.
"""

from __future__ import annotations

import argparse

from assetgen.v1 import common_pb2, gateway_pb2
from assetgen_cli.context import EXIT_OK, Cli

__all__ = [
    "keys_create",
    "keys_list",
    "keys_revoke",
    "projects_create",
    "projects_delete",
    "projects_get",
    "projects_list",
    "projects_rename",
]


def _project_line(cli: Cli, project: common_pb2.Project) -> None:
    cli.line(project.id, project.name, project.created_at.ToJsonString())


async def projects_list(cli: Cli, args: argparse.Namespace) -> int:
    """Prints the projects by name."""
    response = await cli.api.ListProjects(
        gateway_pb2.ListProjectsRequest(), metadata=cli.metadata, timeout=cli.timeout
    )

    def human() -> None:
        for project in response.items:
            _project_line(cli, project)

    cli.show(response, human)
    return EXIT_OK


async def projects_create(cli: Cli, args: argparse.Namespace) -> int:
    """Creates a project and prints it."""
    project = await cli.api.CreateProject(
        gateway_pb2.CreateProjectRequest(name=args.name, budget=args.budget or ""),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    cli.show(project, lambda: _project_line(cli, project))
    return EXIT_OK


async def projects_get(cli: Cli, args: argparse.Namespace) -> int:
    """Prints one project."""
    project = await cli.api.GetProject(
        gateway_pb2.GetProjectRequest(id=args.project), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(project, lambda: _project_line(cli, project))
    return EXIT_OK


async def projects_rename(cli: Cli, args: argparse.Namespace) -> int:
    """Renames a project."""
    project = await cli.api.UpdateProject(
        gateway_pb2.UpdateProjectRequest(id=args.project, name=args.name),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )
    cli.show(project, lambda: _project_line(cli, project))
    return EXIT_OK


async def projects_delete(cli: Cli, args: argparse.Namespace) -> int:
    """Deletes a project without boxes, with its keys."""
    response = await cli.api.DeleteProject(
        gateway_pb2.DeleteProjectRequest(id=args.project), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(response, lambda: cli.note(f"deleted project {args.project}"))
    return EXIT_OK


def _key_line(cli: Cli, key: common_pb2.ApiKey) -> None:
    state = f"revoked {key.revoked_at.ToJsonString()}" if key.HasField("revoked_at") else "valid"
    cli.line(key.id, key.name, key.project, ",".join(key.scopes), state)


async def keys_list(cli: Cli, args: argparse.Namespace) -> int:
    """Prints the API keys (never their secrets), newest first."""
    response = await cli.api.ListApiKeys(
        gateway_pb2.ListApiKeysRequest(project=args.project or ""), metadata=cli.metadata, timeout=cli.timeout
    )

    def human() -> None:
        for key in response.items:
            _key_line(cli, key)

    cli.show(response, human)
    return EXIT_OK


async def keys_create(cli: Cli, args: argparse.Namespace) -> int:
    """Creates a key; prints its secret once on stdout and what it is on stderr."""
    scopes = [scope for value in args.scope for scope in value.split(",") if scope]
    key = await cli.api.CreateApiKey(
        gateway_pb2.CreateApiKeyRequest(name=args.name, project=args.project, scopes=scopes),
        metadata=cli.metadata,
        timeout=cli.timeout,
    )

    def human() -> None:
        print(key.key, file=cli.out)
        cli.note(f"key {key.id} of project {key.project}, scopes {','.join(key.scopes)}")
        cli.note("the key is shown only now: store it (e.g. in a file for ASSETGEN_TOKEN_FILE)")

    cli.show(key, human)
    return EXIT_OK


async def keys_revoke(cli: Cli, args: argparse.Namespace) -> int:
    """Revokes a key: it is refused from now on."""
    response = await cli.api.DeleteApiKey(
        gateway_pb2.DeleteApiKeyRequest(id=args.id), metadata=cli.metadata, timeout=cli.timeout
    )
    cli.show(response, lambda: cli.note(f"revoked key {args.id}"))
    return EXIT_OK
