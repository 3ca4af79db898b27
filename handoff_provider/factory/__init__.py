"""The DAG factory's parts; the front ends (``handoff_dag``, ``HandoffTaskGroup``,
``handoff_dags_for_folder``) are in :mod:`handoff_provider.dag_factory`.

* :mod:`~.config`: ``ProjectConfig``, ``RenderConfig``, ``ExecutionConfig``;
* :mod:`~.executions`: one module per execution mode (``local``, ``ecs``) and the registry;
* :mod:`~.converter`: the tasks of one project from those configs;
* :mod:`~.parse_cache`: the validated project, cached by file signature;
* :mod:`~.schedules`: EventBridge cron -> Airflow schedule, interval timetables.
"""
