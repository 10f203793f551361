"""Templates run in Jinja's sandbox: the known escapes to Python end in one clean
``DefinitionError`` (file, line, "unsafe template operation") and run nothing.

Each payload tries to create a marker file through ``os.popen``/``subprocess``; the test checks
the error and that the marker does not exist. ``ref``, ``var``, ``env_var``, ``config`` and the
macros are Python callables: their ``__globals__``/``__self__`` must be out of reach too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fsql.config import load_project_config, load_target
from fsql.errors import ConfigError, DefinitionError
from tests.conftest import MakeProject

MACROS = """\
{% macro days(n) -%}
INTERVAL {{ n }} DAY
{%- endmacro %}
"""


def escapes(marker: Path) -> dict[str, str]:
    """Known sandbox escapes, each trying to ``touch marker``."""
    cmd = f"touch {marker}"
    return {
        "lipsum_globals": f'{{{{ lipsum.__globals__["os"].popen("{cmd}").read() }}}}',
        "cycler_init_globals": f'{{{{ cycler.__init__.__globals__.os.popen("{cmd}").read() }}}}',
        "joiner_init_globals": f'{{{{ joiner.__init__.__globals__.os.popen("{cmd}").read() }}}}',
        "namespace_init_globals":
            f'{{{{ namespace.__init__.__globals__.os.popen("{cmd}").read() }}}}',
        "range_globals": f'{{{{ range.__globals__["os"].popen("{cmd}").read() }}}}',
        "subclasses": "{% for c in ''.__class__.__mro__[1].__subclasses__() %}"
                      "{% if c.__name__ == 'Popen' %}{{ c(['touch', '" + str(marker) + "']) }}"
                      "{% endif %}{% endfor %}",
        "template_reference_context":
            "{{ self._TemplateReference__context.cycler.__init__.__globals__.os"
            f'.popen("{cmd}").read() }}}}',
        "config_globals": f'{{{{ config.__globals__["os"].popen("{cmd}").read() }}}}',
        "config_func_globals":
            f'{{{{ config.__func__.__globals__["os"].popen("{cmd}").read() }}}}',
        "ref_self": "{{ ref.__self__.env.globals }}",
        "env_var_globals": f'{{{{ env_var.__globals__["os"].popen("{cmd}").read() }}}}',
        "macro_func_globals": f'{{{{ days._func.__globals__["os"].popen("{cmd}").read() }}}}',
        "attr_filter": "{{ (lipsum|attr('__globals__'))['os'].popen('" + cmd + "').read() }}",
        "attr_filter_chain": "{{ ((cycler|attr('__init__'))|attr('__globals__'))"
                             "['os'].popen('" + cmd + "').read() }}",
        "format_string": '{{ "{0.__class__.__mro__}".format(ref) }}',
        "format_globals": '{{ "{0.__init__.__globals__[os]}".format(lipsum) }}',
        "format_map": '{{ "{x.__globals__}".format_map({"x": lipsum}) }}',
        "format_filter": '{{ "%s"|format(lipsum.__globals__) }}',
    }


CASES = sorted(escapes(Path("/marker")))


@pytest.mark.parametrize("case", CASES)
def test_escape_in_model_is_a_clean_error(case: str, make_project: MakeProject,
                                          tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = escapes(marker)[case]
    project = make_project({
        "macros/days.sql": MACROS,
        "models/evil.sql": f"SELECT\n    1 AS x,\n    '{payload}' AS y\n",
    })
    with pytest.raises(DefinitionError) as caught:
        project.compile()
    message = str(caught.value)
    assert message.startswith("models/evil.sql:3: unsafe template operation"), message
    assert not marker.exists(), f"{case} ran a command"


def test_escape_in_macro_names_the_macro_file(make_project: MakeProject, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    project = make_project({
        "macros/evil.sql": "{% macro evil() -%}\n"
                           f"{{{{ lipsum.__globals__.os.popen('touch {marker}').read() }}}}\n"
                           "{%- endmacro %}\n",
        "models/m.sql": "SELECT '{{ evil() }}' AS x\n",
    })
    with pytest.raises(DefinitionError, match=r"^macros/evil.sql:2: unsafe template operation"):
        project.compile()
    assert not marker.exists()


def test_escape_in_profiles_is_a_config_error(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "fsql_project.yml").write_text("name: p\n")
    (tmp_path / "profiles.yml").write_text(
        "p:\n  target: dev\n  outputs:\n    dev:\n      offline:\n"
        f"        path: \"{{{{ lipsum.__globals__.os.popen('touch {marker}').read() }}}}\"\n")
    with pytest.raises(ConfigError, match=r"profiles.yml:6: unsafe template operation"):
        load_target(load_project_config(tmp_path))
    assert not marker.exists()


def test_safe_templates_still_work(make_project: MakeProject,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Loops, namespaces, joiner, string methods and filters are not escapes."""
    monkeypatch.setenv("FSQL_TEST_REGION", "eu")
    project = make_project({
        "fsql_project.yml": "name: test\nvars:\n  cols: [a, b]\n",
        "macros/days.sql": MACROS,
        "models/ok.sql": """\
            {{ config(materialized='table') }}
            {%- set ns = namespace(n=0) %}{% set comma = joiner(', ') %}
            SELECT {% for c in var('cols') %}{{ comma() }}{{ loop.index }} AS {{ c }}
            {%- set ns.n = ns.n + 1 %}{% endfor %},
                {{ ns.n }} AS n, '{{ env_var('FSQL_TEST_REGION') | upper }}' AS region,
                '{{ "{}-{}".format('x', 'y') }}' AS f, CURRENT_DATE + {{ days(1) }} AS d
            """,
    })
    compiled = project.compile()
    sql = compiled.nodes["model:ok"].query.sql()
    assert "1 AS a, 2 AS b, 2 AS n, 'EU' AS region, 'x-y' AS f" in sql
