"""ProvTAP: the provenance record as the views of the ``provenance`` schema, and TAP_SCHEMA.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

PostgreSQL only (the TAP service answers "ProvTAP needs PostgreSQL" on SQLite, and this
revision does nothing there). Creates

- schema ``provenance``: one view per ProvTAP table over the ``prov_*`` tables. Each view
  keeps only the rows the viewer may read (:meth:`opus.auth.AccessPolicy.may_read`: admin,
  public, anonymous-owned, or the viewer's own), the viewer being given by the
  transaction-local settings ``opus.tap_viewer`` (users.id) and ``opus.tap_admin``
  (``on``) that :mod:`opus.storage.provtap` sets before each query; unset (any other
  session), a view shows what an anonymous caller sees. A relation row (used,
  wasGeneratedBy, ...) is kept only when every activity and entity it names is readable; an
  agent only when it is associated with a readable activity or attributed a readable entity.
  The views are ``security_barrier`` views: conditions of a query are evaluated after the
  view's own filter, so an expression that fails on some value (a division by zero...)
  cannot probe rows the filter removes.
- schema ``tap_schema``: the TAP 1.1 (section 4) tables ``schemas``, ``tables``,
  ``columns``, ``keys``, ``key_columns``, filled here with the description of every table
  and column (units, UCDs, descriptions), TAP_SCHEMA's own included.

Column names follow the ProvenanceDM 1.0 attributes (``generatedAtTime`` ->
``generated_at_time``, in lower case with underscores so that ADQL needs no quoting), and
relations name their ends ``activity_id``, ``entity_id``, ``agent_id``. ADQL reserved words
are avoided: Used.time is ``usage_time``, Parameter.value ``param_value``, the entity's
size ``content_size``.

A later revision that changes a ``prov_*`` column these views read must drop and recreate
the views (PostgreSQL refuses to alter a column a view depends on).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: AccessPolicy.may_read(viewer, owner_key, public) in SQL, for the alias ``{t}``.
MAY_READ = ("({t}.public OR {t}.owner_key IS NULL"
            " OR {t}.owner_key = current_setting('opus.tap_viewer', true)"
            " OR current_setting('opus.tap_admin', true) = 'on')")
ADMIN = "current_setting('opus.tap_admin', true) = 'on'"


def _may(alias: str) -> str:
    return MAY_READ.format(t=alias)


VIEWS = {
    "activity": f"""
        SELECT a.id, a.name, a.start_time, a.end_time, a.comment,
               CASE WHEN a.description_name IS NULL THEN NULL
                    ELSE a.description_name || COALESCE('/' || a.description_version, '')
               END::varchar AS activity_description_id,
               a.job_id, a.phase, a.exit_code
        FROM prov_activity a WHERE {_may('a')}""",
    "entity": f"""
        SELECT e.id, e.name, e.location, e.generated_at_time, e.invalidated_at_time,
               e.comment, e.content_type, e.size AS content_size, e.sha256, e.job_id,
               e.result_id
        FROM prov_entity e WHERE {_may('e')}""",
    "used": f"""
        SELECT u.activity_id, u.entity_id, u.role, u.time AS usage_time
        FROM prov_used u JOIN prov_activity a ON a.id = u.activity_id
             JOIN prov_entity e ON e.id = u.entity_id
        WHERE {_may('a')} AND {_may('e')}""",
    "wasgeneratedby": f"""
        SELECT g.entity_id, g.activity_id, g.role
        FROM prov_wasgeneratedby g JOIN prov_activity a ON a.id = g.activity_id
             JOIN prov_entity e ON e.id = g.entity_id
        WHERE {_may('a')} AND {_may('e')}""",
    "wasassociatedwith": f"""
        SELECT w.activity_id, w.agent_id, w.role
        FROM prov_wasassociatedwith w JOIN prov_activity a ON a.id = w.activity_id
        WHERE {_may('a')}""",
    "wasattributedto": f"""
        SELECT w.entity_id, w.agent_id, w.role
        FROM prov_wasattributedto w JOIN prov_entity e ON e.id = w.entity_id
        WHERE {_may('e')}""",
    "wasderivedfrom": f"""
        SELECT d.generated_entity_id, d.used_entity_id, d.activity_id
        FROM prov_wasderivedfrom d JOIN prov_entity g ON g.id = d.generated_entity_id
             JOIN prov_entity u ON u.id = d.used_entity_id
        LEFT JOIN prov_activity a ON a.id = d.activity_id
        WHERE {_may('g')} AND {_may('u')} AND (a.id IS NULL OR {_may('a')})""",
    "agent": f"""
        SELECT g.id, g.name, g.type, g.email, g.url
        FROM prov_agent g
        WHERE {ADMIN}
           OR EXISTS (SELECT 1 FROM prov_wasassociatedwith w
                      JOIN prov_activity a ON a.id = w.activity_id
                      WHERE w.agent_id = g.id AND {_may('a')})
           OR EXISTS (SELECT 1 FROM prov_wasattributedto w
                      JOIN prov_entity e ON e.id = w.entity_id
                      WHERE w.agent_id = g.id AND {_may('e')})""",
    "parameter": f"""
        SELECT p.activity_id, p.name, p.value AS param_value
        FROM prov_parameter p JOIN prov_activity a ON a.id = p.activity_id
        WHERE {_may('a')}""",
    "activitydescription": f"""
        SELECT (a.description_name || COALESCE('/' || a.description_version, ''))::varchar
                   AS id,
               a.description_name AS name, a.description_version AS version
        FROM prov_activity a WHERE a.description_name IS NOT NULL AND {_may('a')}
        GROUP BY a.description_name, a.description_version""",
}

# (name, datatype, xtype, unit, ucd, principal, indexed, description); arraysize is "*"
# for every char column.
Column = tuple[str, str, str | None, str | None, str | None, int, int, str]
TS = "timestamp"
ID_OF = "meta.id.assoc"

#: (table, type, description, columns) per schema, in the order of TAP_SCHEMA's indexes.
PROVENANCE: list[tuple[str, str, str, list[Column]]] = [
    ("activity", "view", "Activities (ProvenanceDM Activity): one per run of an OPUS job.", [
        ("id", "char", None, None, "meta.id;meta.main", 1, 1,
         "Activity identifier (act-<job id>)"),
        ("name", "char", None, None, "meta.id", 1, 1, "Name: the activity the job ran"),
        ("start_time", "char", TS, None, "time.start", 1, 0, "Start of the run (UTC)"),
        ("end_time", "char", TS, None, "time.end", 1, 1, "End of the run (UTC)"),
        ("comment", "char", None, None, "meta.note", 0, 0, "Free text about the run"),
        ("activity_description_id", "char", None, None, ID_OF, 0, 0,
         "The ActivityDescription the run followed (activitydescription.id)"),
        ("job_id", "char", None, None, "meta.id", 0, 1, "The OPUS (UWS) job identifier"),
        ("phase", "char", None, None, "meta.code.status", 0, 0,
         "Final UWS phase of the job (COMPLETED, ERROR, ABORTED)"),
        ("exit_code", "int", None, None, "meta.code", 0, 0, "Exit status of the program"),
    ]),
    ("entity", "view", "Entities (ProvenanceDM Entity): job results and the inputs runs "
     "used.", [
        ("id", "char", None, None, "meta.id;meta.main", 1, 1, "Entity identifier"),
        ("name", "char", None, None, "meta.id", 1, 0, "Name (file or result name)"),
        ("location", "char", None, None, "meta.ref.url", 1, 0, "Where the entity is (URL)"),
        ("generated_at_time", "char", TS, None, "time.creation", 1, 0,
         "When the entity was generated (UTC)"),
        ("invalidated_at_time", "char", TS, None, "time.end", 0, 0,
         "When the entity was invalidated: its job deleted or archived (UTC)"),
        ("comment", "char", None, None, "meta.note", 0, 0, "Free text about the entity"),
        ("content_type", "char", None, None, "meta.code.mime", 1, 0, "Media type"),
        ("content_size", "long", None, "byte", "phys.size;meta.file", 1, 0, "Size"),
        ("sha256", "char", None, None, "meta.code", 0, 1, "SHA-256 of the content (hex)"),
        ("job_id", "char", None, None, "meta.id", 0, 1,
         "The OPUS job this entity is a result of"),
        ("result_id", "char", None, None, "meta.id", 0, 0, "The UWS result identifier"),
    ]),
    ("used", "view", "Used relations: an activity used an entity (ProvenanceDM Used).", [
        ("activity_id", "char", None, None, ID_OF, 1, 1, "The activity (activity.id)"),
        ("entity_id", "char", None, None, ID_OF, 1, 1, "The entity used (entity.id)"),
        ("role", "char", None, None, "meta.code", 1, 0, "Role of the entity for the activity"),
        ("usage_time", "char", TS, None, "time.epoch", 0, 0, "When it was used (UTC)"),
    ]),
    ("wasgeneratedby", "view", "WasGeneratedBy relations: an entity was generated by an "
     "activity.", [
        ("entity_id", "char", None, None, ID_OF, 1, 1, "The entity generated (entity.id)"),
        ("activity_id", "char", None, None, ID_OF, 1, 1, "The activity (activity.id)"),
        ("role", "char", None, None, "meta.code", 1, 0, "Role of the entity for the activity"),
    ]),
    ("wasassociatedwith", "view", "WasAssociatedWith relations: an agent was responsible "
     "for an activity.", [
        ("activity_id", "char", None, None, ID_OF, 1, 1, "The activity (activity.id)"),
        ("agent_id", "char", None, None, ID_OF, 1, 1, "The agent (agent.id)"),
        ("role", "char", None, None, "meta.code", 1, 0,
         "Role of the agent (Operator, Curator, Provider...)"),
    ]),
    ("wasattributedto", "view", "WasAttributedTo relations: an entity is attributed to an "
     "agent.", [
        ("entity_id", "char", None, None, ID_OF, 1, 1, "The entity (entity.id)"),
        ("agent_id", "char", None, None, ID_OF, 1, 1, "The agent (agent.id)"),
        ("role", "char", None, None, "meta.code", 1, 0, "Role of the agent"),
    ]),
    ("wasderivedfrom", "view", "WasDerivedFrom relations between entities (from the "
     "activities' PROV-Templates).", [
        ("generated_entity_id", "char", None, None, ID_OF, 1, 1,
         "The derived entity (entity.id)"),
        ("used_entity_id", "char", None, None, ID_OF, 1, 1,
         "The entity it was derived from (entity.id)"),
        ("activity_id", "char", None, None, ID_OF, 0, 0,
         "The activity of the derivation (activity.id)"),
    ]),
    ("agent", "view", "Agents (ProvenanceDM Agent): job owners, activity contacts, OPUS.", [
        ("id", "char", None, None, "meta.id;meta.main", 1, 1, "Agent identifier"),
        ("name", "char", None, None, "meta.id", 1, 1, "Name"),
        ("type", "char", None, None, "meta.code.class", 1, 0,
         "Person, Organization or SoftwareAgent"),
        ("email", "char", None, None, "meta.email", 0, 0, "E-mail address"),
        ("url", "char", None, None, "meta.ref.url", 0, 0, "Web page"),
    ]),
    ("parameter", "view", "Parameters of activities (ProvenanceDM ActivityConfiguration "
     "Parameter).", [
        ("activity_id", "char", None, None, ID_OF, 1, 1, "The activity (activity.id)"),
        ("name", "char", None, None, "meta.id", 1, 1, "Parameter name"),
        ("param_value", "char", None, None, None, 1, 0, "Parameter value, as text"),
    ]),
    ("activitydescription", "view", "ActivityDescriptions the recorded runs followed "
     "(name and version of the OPUS activity description file).", [
        ("id", "char", None, None, "meta.id;meta.main", 1, 0, "Identifier: name/version"),
        ("name", "char", None, None, "meta.id", 1, 0, "Activity name"),
        ("version", "char", None, None, "meta.version", 1, 0, "Description version"),
    ]),
]

TAP_SCHEMA: list[tuple[str, str, str, list[Column]]] = [
    ("schemas", "table", "Schemas of this service (TAP 1.1 section 4.1).", [
        ("schema_name", "char", None, None, None, 1, 1, "Schema name"),
        ("utype", "char", None, None, None, 1, 0, "Utype of the schema"),
        ("description", "char", None, None, None, 1, 0, "Description"),
        ("schema_index", "int", None, None, None, 0, 0, "Recommended display order"),
    ]),
    ("tables", "table", "Tables of this service (TAP 1.1 section 4.2).", [
        ("schema_name", "char", None, None, None, 1, 1, "Schema of the table"),
        ("table_name", "char", None, None, None, 1, 1, "Fully qualified table name"),
        ("table_type", "char", None, None, None, 1, 0, "table or view"),
        ("utype", "char", None, None, None, 1, 0, "Utype of the table"),
        ("description", "char", None, None, None, 1, 0, "Description"),
        ("table_index", "int", None, None, None, 0, 0, "Recommended display order"),
    ]),
    ("columns", "table", "Columns of the tables (TAP 1.1 section 4.3).", [
        ("table_name", "char", None, None, None, 1, 1, "Fully qualified table name"),
        ("column_name", "char", None, None, None, 1, 1, "Column name"),
        ("datatype", "char", None, None, None, 1, 0, "VOTable datatype"),
        ("arraysize", "char", None, None, None, 1, 0, "VOTable arraysize"),
        ("xtype", "char", None, None, None, 1, 0, "VOTable xtype"),
        ('"size"', "int", None, None, None, 0, 0, "Length of fixed-size arrays (deprecated)"),
        ("description", "char", None, None, None, 1, 0, "Description"),
        ("utype", "char", None, None, None, 1, 0, "Utype"),
        ("unit", "char", None, None, None, 1, 0, "Unit (VOUnit)"),
        ("ucd", "char", None, None, None, 1, 0, "UCD"),
        ("indexed", "int", None, None, None, 1, 0, "1 if the column is indexed"),
        ("principal", "int", None, None, None, 1, 0, "1 if the column is principal"),
        ("std", "int", None, None, None, 1, 0, "1 if the column is defined by a standard"),
        ("column_index", "int", None, None, None, 0, 0, "Recommended display order"),
    ]),
    ("keys", "table", "Foreign keys between tables (TAP 1.1 section 4.4).", [
        ("key_id", "char", None, None, None, 1, 1, "Key identifier"),
        ("from_table", "char", None, None, None, 1, 0, "Table with the foreign key"),
        ("target_table", "char", None, None, None, 1, 0, "Table with the primary key"),
        ("utype", "char", None, None, None, 1, 0, "Utype"),
        ("description", "char", None, None, None, 1, 0, "Description"),
    ]),
    ("key_columns", "table", "Columns of the foreign keys (TAP 1.1 section 4.5).", [
        ("key_id", "char", None, None, None, 1, 1, "Key identifier (keys.key_id)"),
        ("from_column", "char", None, None, None, 1, 0, "Column of the from_table"),
        ("target_column", "char", None, None, None, 1, 0, "Column of the target_table"),
    ]),
]

SCHEMAS = [
    ("provenance", "The OPUS provenance record (IVOA ProvenanceDM 1.0, as in the ProvTAP "
                   "note): only the rows the caller may read are visible."),
    ("tap_schema", "Description of the tables and columns of this service (TAP 1.1)."),
]

#: (from table, from column, target table, target column) of the foreign keys.
KEYS = [(f"provenance.{frm}", col, f"provenance.{target}", "id") for frm, col, target in (
    ("activity", "activity_description_id", "activitydescription"),
    ("used", "activity_id", "activity"), ("used", "entity_id", "entity"),
    ("wasgeneratedby", "entity_id", "entity"), ("wasgeneratedby", "activity_id", "activity"),
    ("wasassociatedwith", "activity_id", "activity"),
    ("wasassociatedwith", "agent_id", "agent"),
    ("wasattributedto", "entity_id", "entity"), ("wasattributedto", "agent_id", "agent"),
    ("wasderivedfrom", "generated_entity_id", "entity"),
    ("wasderivedfrom", "used_entity_id", "entity"),
    ("wasderivedfrom", "activity_id", "activity"),
    ("parameter", "activity_id", "activity"))] + [
    ("tap_schema.tables", "schema_name", "tap_schema.schemas", "schema_name"),
    ("tap_schema.columns", "table_name", "tap_schema.tables", "table_name"),
    ("tap_schema.keys", "from_table", "tap_schema.tables", "table_name"),
    ("tap_schema.keys", "target_table", "tap_schema.tables", "table_name"),
    ("tap_schema.key_columns", "key_id", "tap_schema.keys", "key_id"),
]

DDL = """
CREATE TABLE tap_schema.schemas (schema_name varchar PRIMARY KEY, utype varchar,
    description varchar, schema_index integer);
CREATE TABLE tap_schema.tables (schema_name varchar NOT NULL, table_name varchar PRIMARY KEY,
    table_type varchar NOT NULL, utype varchar, description varchar, table_index integer);
CREATE TABLE tap_schema.columns (table_name varchar NOT NULL, column_name varchar NOT NULL,
    datatype varchar NOT NULL, arraysize varchar, xtype varchar, "size" integer,
    description varchar, utype varchar, unit varchar, ucd varchar,
    indexed integer NOT NULL, principal integer NOT NULL, std integer NOT NULL,
    column_index integer, PRIMARY KEY (table_name, column_name));
CREATE TABLE tap_schema.keys (key_id varchar PRIMARY KEY, from_table varchar NOT NULL,
    target_table varchar NOT NULL, utype varchar, description varchar);
CREATE TABLE tap_schema.key_columns (key_id varchar NOT NULL, from_column varchar NOT NULL,
    target_column varchar NOT NULL)
"""


def _rows() -> dict[str, list[dict[str, object]]]:
    rows: dict[str, list[dict[str, object]]] = {
        "schemas": [], "tables": [], "columns": [], "keys": [], "key_columns": []}
    for index, (schema, description) in enumerate(SCHEMAS):
        rows["schemas"].append({"schema_name": schema, "utype": None,
                                "description": description, "schema_index": index})
    position = 0
    for schema, tables in (("provenance", PROVENANCE), ("tap_schema", TAP_SCHEMA)):
        for table, kind, description, columns in tables:
            name = f"{schema}.{table}"
            rows["tables"].append({"schema_name": schema, "table_name": name,
                                   "table_type": kind, "utype": None,
                                   "description": description, "table_index": position})
            position += 1
            for index, (column, datatype, xtype, unit, ucd, principal, indexed,
                        text) in enumerate(columns):
                rows["columns"].append({
                    "table_name": name, "column_name": column, "datatype": datatype,
                    "arraysize": "*" if datatype == "char" else None, "xtype": xtype,
                    "size": None, "description": text, "utype": None, "unit": unit,
                    "ucd": ucd, "indexed": indexed, "principal": principal,
                    "std": 1 if schema == "tap_schema" else 0, "column_index": index})
    for number, (frm, column, target, target_column) in enumerate(KEYS, 1):
        key = f"k{number}"
        rows["keys"].append({"key_id": key, "from_table": frm, "target_table": target,
                             "utype": None, "description": f"{frm}.{column} refers to "
                             f"{target}.{target_column}"})
        rows["key_columns"].append({"key_id": key, "from_column": column,
                                    "target_column": target_column})
    return rows


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return  # ProvTAP needs PostgreSQL: nothing to create on SQLite
    op.execute("CREATE SCHEMA provenance")
    op.execute("CREATE SCHEMA tap_schema")
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW provenance.{name} WITH (security_barrier) AS {body}")
    for statement in DDL.split(";"):
        op.execute(statement)
    for table, rows in _rows().items():
        columns = list(rows[0])
        names = ", ".join('"size"' if c == "size" else c for c in columns)
        values = ", ".join(f":{c}" for c in columns)
        connection.execute(sa.text(f"INSERT INTO tap_schema.{table} ({names}) "
                                   f"VALUES ({values})"), rows)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP SCHEMA tap_schema CASCADE")
    op.execute("DROP SCHEMA provenance CASCADE")
