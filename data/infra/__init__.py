"""bcls.data.infra — the infrastructure every layer shares, apart from the file formats.

* :mod:`~.errors` — the one-line errors, with structured fields (what, where, hint) the CLI renders;
* :mod:`~.plugins` — the plug-in registry shape (``create(name, **options)``);
* :mod:`~.config_checks` — type checks shared by the frozen config dataclasses;
* :mod:`~.atomic` — atomic writes, disk-space checks; :mod:`~.progress` — the one progress style;
* :mod:`~.lazy` — lazy package exports; :mod:`~.runtime` — OpenMP's wait policy; :mod:`~.version`;
* :mod:`~.interrupts` — Ctrl-C that Python would drop, raised again at a loop's next step.

May import: nothing of bcls outside this package.
"""
