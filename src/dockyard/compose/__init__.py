"""``dockyard compose``: multi-container applications from Compose files (Compose v2).

Loading (nothing is created until all of it succeeded):
    ``loader.load_project(LoadOptions(files, project_name, project_directory, env_files,
    profiles, environ, cwd)) -> model.Project`` -- file discovery, ``.env``,
    interpolation (``interpolate``), validation against our own description of the
    Compose Specification (``schema``, errors name the path and line), ``extends``,
    ``-f`` merging (``merge``), profiles, and normalization (``normalize``).

Conversion: ``convert.container_spec(project, service, number, image_id=...)`` ->
(ContainerSpec, extra networks) with Compose's names and ``com.docker.compose.*`` labels.

Operations: ``up.Converger`` (create/recreate/scale/start in dependency order,
independent services at once, waiting for service_healthy and
service_completed_successfully), ``ops`` (down, stop, start, kill, rm, pause),
``images`` (pull/build), ``resources`` (the project's containers, networks and
volumes, found by label), ``logs`` (prefixed, coloured output), ``interactive`` and
``listing`` (the subcommands; flags are parsed in ``dockyard.cli.compose_commands``).
Worker threads each open their own Context (``runner.Contexts``).
"""
