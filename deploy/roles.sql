-- Least-privilege PostgreSQL roles for prcrs-batch.
--
-- Run with psql, as a superuser or the database owner, in the database that holds the
-- results tables (and, on a single-database site, the warehouse tables):
--
--     psql -v ON_ERROR_STOP=1 -d prcrs -f deploy/roles.sql
--
-- Idempotent: run it again after every `prcrs-batch init-db` that adds a table, and after
-- tables are added to the warehouse (`prcrs-batch check` says so when the job cannot read
-- or write one). It uses only psql meta-commands (\set, \if, \gexec) and plain SQL.
--
-- Four group roles (NOLOGIN). People and services log in as their own LOGIN roles and
-- are made members (see deploy/README.md, "Database roles"):
--
--   prcrs_reader    SELECT on the warehouse tables the job reads: the contract's
--                   cart_infusions, lab_results, crs_assessments (tables or views), or with
--                   -v model=omop the OMOP CDM's person, measurement, drug_exposure,
--                   procedure_occurrence, condition_occurrence, observation, concept,
--                   concept_ancestor. Nothing else.
--   prcrs_writer    SELECT, INSERT, UPDATE, DELETE on the results tables scoring_runs,
--                   crs_risk_scores, crs_patient_nights, crs_risk_explanations,
--                   data_quality_issues, night_claims, and their id sequences; SELECT on
--                   the views and alembic_version (the schema's revision). No DDL:
--                   cannot create, alter, drop or truncate tables.
--   prcrs_migrator  Owns the results schema; `prcrs-batch init-db` (Alembic) runs as it.
--   prcrs_bi        SELECT on crs_risk_scores, crs_patient_nights, crs_risk_explanations,
--                   scoring_runs and the views only: BI sees the labs the report names
--                   (at most 5 per flagged patient and horizon, as the email shows them),
--                   never the warehouse's lab values or data-quality rows (raw text).
--
-- The nightly job's login is a member of prcrs_reader and prcrs_writer. It never loads
-- data: `prcrs-batch load-cohort` (trials, tests) runs as a login that may create and write
-- tables in the warehouse schema (its owner, or the site's ETL login).
--
-- psql variables (all optional):
--   -v scope=all|warehouse|results  (default all) what to grant in this database. Where
--       the warehouse is another database or server, run it there with scope=warehouse
--       (the reader's grants only: nothing else in a hospital warehouse is touched) and
--       in the results database with scope=results.
--   -v schema=NAME  (default public) the schema holding the tables; the default of the two
--       below.
--   -v warehouse_schema=NAME[,NAME]  the warehouse's schema(s), as PRCRS_WAREHOUSE_SCHEMA
--       names them (cdm, or cdm,vocab when the vocabulary lives apart).
--   -v results_schema=NAME  the results schema, as PRCRS_RESULTS_SCHEMA names it; created
--       here (owned by the migrator) where absent.
--   -v model=contract|omop  (default contract) the warehouse tables the reader may read.
--   -v loader=LOGIN  the login that creates warehouse tables later (load-cohort, the site's
--       ETL): tables it creates in the warehouse schema(s) from now on are readable by the
--       reader without a rerun (ALTER DEFAULT PRIVILEGES; every table that login creates
--       there, so name a login that loads nothing else into those schemas).
--   -v reader=... -v writer=... -v migrator=... -v bi=...  other role names (the tests
--       use unique names, because roles are cluster-wide).
--
-- Schema names are unquoted identifiers, as in a search_path: PostgreSQL folds them to
-- lower case; each is quoted (format %I) wherever it is used.

\if :{?reader}
\else
\set reader prcrs_reader
\endif
\if :{?writer}
\else
\set writer prcrs_writer
\endif
\if :{?migrator}
\else
\set migrator prcrs_migrator
\endif
\if :{?bi}
\else
\set bi prcrs_bi
\endif
\if :{?schema}
\else
\set schema public
\endif
\if :{?warehouse_schema}
\else
\set warehouse_schema :schema
\endif
\if :{?results_schema}
\else
\set results_schema :schema
\endif
\if :{?model}
\else
\set model contract
\endif
\if :{?scope}
\else
\set scope all
\endif
SELECT :'scope' IN ('all', 'warehouse') AS grant_warehouse,
       :'scope' IN ('all', 'results') AS grant_results,
       :'scope' NOT IN ('all', 'warehouse', 'results') AS bad_scope,
       :'model' NOT IN ('contract', 'omop') AS bad_model,
       lower(trim(:'results_schema')) AS results_schema
\gset
\if :bad_scope
DO $$ BEGIN RAISE EXCEPTION 'scope must be all, warehouse or results'; END $$;
\endif
\if :bad_model
DO $$ BEGIN RAISE EXCEPTION 'model must be contract or omop'; END $$;
\endif

BEGIN;

-- 1. The group roles, created only where absent (roles are cluster-wide).
SELECT format('CREATE ROLE %I NOLOGIN', name)
FROM unnest(ARRAY[:'reader', :'writer', :'migrator', :'bi']) AS name
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name)
\gexec

-- The warehouse's schemas, as the setting lists them (the queries' search_path).
CREATE TEMPORARY TABLE prcrs_warehouse_schemas ON COMMIT DROP AS
SELECT lower(trim(name)) AS name
FROM unnest(string_to_array(:'warehouse_schema', ',')) AS name
WHERE trim(name) <> '';

-- 2. The database and the schemas.
\if :grant_warehouse
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'reader')
\gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO %I', s.name, :'reader')
FROM prcrs_warehouse_schemas AS s
WHERE EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s.name)
\gexec
\endif
\if :grant_results
-- The results schema, owned by the migrator when this script creates it.
SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', :'results_schema', :'migrator')
\gexec
-- Nobody but the migrator may create objects in the results schema: PostgreSQL before
-- 15 lets PUBLIC create tables in schema public (CVE-2018-1058), so that right is taken
-- away here whatever the version.
SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I, %I',
              current_database(), :'writer', :'migrator', :'bi')
\gexec
SELECT format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', :'results_schema')
\gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO %I, %I', :'results_schema', :'writer', :'bi')
\gexec
SELECT format('GRANT USAGE, CREATE ON SCHEMA %I TO %I', :'results_schema', :'migrator')
\gexec

-- 3. The results schema belongs to the migrator. If init-db was first run as another
-- role (e.g. postgres), hand its tables over; ALTER TABLE ... OWNER also moves the id
-- sequences the tables own. Names that do not exist yet are skipped.
SELECT format('ALTER %s %I.%I OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END,
              :'results_schema', c.relname, :'migrator')
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = :'results_schema'
  AND c.relname IN ('scoring_runs', 'crs_risk_scores', 'crs_patient_nights',
                    'crs_risk_explanations', 'model_performance', 'input_drift',
                    'prediction_outcomes', 'data_quality_issues', 'night_claims', 'crs_risk_latest',
                    'crs_risk_newest_per_patient', 'crs_patient_nights_sent',
                    'model_performance_latest', 'input_drift_latest', 'alembic_version')
  AND pg_get_userbyid(c.relowner) <> :'migrator'
\gexec

\endif

\if :grant_warehouse
-- 4. prcrs_reader: read-only on the warehouse tables the queries read (tables or views),
-- in whichever of the warehouse's schemas holds each.
SELECT format('GRANT SELECT ON %I.%I TO %I', s.name, t, :'reader')
FROM prcrs_warehouse_schemas AS s
CROSS JOIN unnest(CASE :'model'
    WHEN 'omop' THEN ARRAY['person', 'measurement', 'drug_exposure', 'procedure_occurrence',
                           'condition_occurrence', 'observation', 'concept', 'concept_ancestor']
    ELSE ARRAY['cart_infusions', 'lab_results', 'crs_assessments'] END) AS t
WHERE to_regclass(format('%I.%I', s.name, t)) IS NOT NULL
\gexec
\if :{?loader}
-- Tables the loader creates there later are the reader's to read, without a rerun.
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO %I',
              :'loader', s.name, :'reader')
FROM prcrs_warehouse_schemas AS s
WHERE EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s.name)
\gexec
\endif
\endif

\if :grant_results
-- 5. prcrs_writer: rows in the results tables, no DDL (it owns nothing, and has no
-- CREATE on the schema). TRUNCATE, REFERENCES and TRIGGER are not granted.
SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO %I', :'results_schema', t, :'writer')
FROM unnest(ARRAY['scoring_runs', 'crs_risk_scores', 'crs_patient_nights',
                   'crs_risk_explanations', 'model_performance', 'input_drift',
                   'prediction_outcomes', 'data_quality_issues', 'night_claims']) AS t
WHERE to_regclass(format('%I.%I', :'results_schema', t)) IS NOT NULL
\gexec
-- The views are read by the job's checks and by tests; SELECT only.
SELECT format('GRANT SELECT ON %I.%I TO %I', :'results_schema', v, :'writer')
FROM unnest(ARRAY['crs_risk_latest', 'crs_risk_newest_per_patient', 'crs_patient_nights_sent',
                   'model_performance_latest', 'input_drift_latest']) AS v
WHERE to_regclass(format('%I.%I', :'results_schema', v)) IS NOT NULL
\gexec
-- Serial id columns: INSERT needs nextval (USAGE) on their sequences.
SELECT format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I', s, :'writer')
FROM (
    SELECT pg_get_serial_sequence(format('%I.%I', :'results_schema', t), 'id') AS s
    FROM unnest(ARRAY['crs_risk_scores', 'crs_patient_nights', 'crs_risk_explanations',
                      'model_performance', 'input_drift', 'prediction_outcomes',
                      'data_quality_issues']) AS t
    WHERE to_regclass(format('%I.%I', :'results_schema', t)) IS NOT NULL
) AS seqs
WHERE s IS NOT NULL
\gexec
-- Tables and sequences that later migrations create (as the migrator) get the same
-- rights without a rerun; the Alembic bookkeeping table is taken back below.
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I '
              'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', :'migrator', :'results_schema', :'writer')
\gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I '
              'GRANT USAGE, SELECT ON SEQUENCES TO %I', :'migrator', :'results_schema', :'writer')
\gexec
SELECT format('REVOKE ALL ON %I.alembic_version FROM %I, %I', :'results_schema', :'writer', :'bi')
WHERE to_regclass(format('%I.alembic_version', :'results_schema')) IS NOT NULL
\gexec
-- ... except reading it: the job checks the schema's revision before a night (and
-- `prcrs-batch check` shows it).
SELECT format('GRANT SELECT ON %I.alembic_version TO %I', :'results_schema', :'writer')
WHERE to_regclass(format('%I.alembic_version', :'results_schema')) IS NOT NULL
\gexec

-- 6. prcrs_bi: the scores, the patient nights, the labs the report named, the views and
-- the run rows. Not the warehouse, not data_quality_issues (it holds raw lab text).
SELECT format('GRANT SELECT ON %I.%I TO %I', :'results_schema', t, :'bi')
FROM unnest(ARRAY['crs_risk_scores', 'crs_patient_nights', 'crs_risk_explanations',
                  'crs_risk_latest', 'crs_risk_newest_per_patient', 'crs_patient_nights_sent',
                  'scoring_runs',
                  'model_performance', 'input_drift', 'prediction_outcomes',
                  'model_performance_latest', 'input_drift_latest']) AS t
WHERE to_regclass(format('%I.%I', :'results_schema', t)) IS NOT NULL
\gexec
\endif

COMMIT;
