-- +goose Up

-- The workflow catalog (CONTRACT §15, internal/catalog). One row per
-- registered version. A version is immutable once written: the trigger below
-- lets an UPDATE change only the lifecycle columns (status, status_reason,
-- is_latest, updated_at, updated_by) and refuses DELETE, so what an agent was
-- offered yesterday is still exactly what the id names today.
CREATE TABLE workflow_versions (
	-- UUIDv5 of kubernaut.ai/workflows/<name>/<version> (URL namespace),
	-- computed by the service: the same after a dump and restore.
	workflow_id     uuid PRIMARY KEY,
	workflow_name   text COLLATE "C" NOT NULL,
	version         text NOT NULL,
	-- Semantic-version precedence as bytes (internal/catalog.VersionKey):
	-- ORDER BY version_key COLLATE "C" is semver order, pre-releases included.
	version_key     text COLLATE "C" NOT NULL,
	is_prerelease   boolean NOT NULL,
	title           text NOT NULL,
	description     jsonb NOT NULL,
	action_type     text NOT NULL,
	labels          jsonb NOT NULL,
	detected_labels jsonb NOT NULL,
	custom_labels   jsonb NOT NULL,
	-- The mandatory and custom labels flattened to 'key=value' (lower case,
	-- custom keys prefixed 'custom.'), the form the candidate filter asks
	-- the GIN index below about.
	label_terms     text[] NOT NULL,
	execution       jsonb NOT NULL,
	parameters      jsonb NOT NULL,
	content         text NOT NULL,
	content_hash    text NOT NULL,
	status          text NOT NULL CHECK (status IN ('active', 'disabled', 'deprecated', 'archived')),
	status_reason   text,
	is_latest       boolean NOT NULL DEFAULT false,
	created_at      timestamptz NOT NULL,
	created_by      text NOT NULL,
	updated_at      timestamptz NOT NULL,
	updated_by      text NOT NULL,
	-- Text relevance: title first, then what it does, then when to use it
	-- and its preconditions. when_not_to_use is left out on purpose: words
	-- there say the workflow does NOT fit.
	search_vector   tsvector GENERATED ALWAYS AS (
		setweight(to_tsvector('english'::regconfig, title), 'A') ||
		setweight(to_tsvector('english'::regconfig, coalesce(description->>'what', '')), 'B') ||
		setweight(to_tsvector('english'::regconfig,
			coalesce(description->>'when_to_use', '') || ' ' || coalesce(description->>'preconditions', '')), 'C')
	) STORED,
	UNIQUE (workflow_name, version),
	CHECK (NOT is_latest OR status = 'active')
);

-- Lists: name, then precedence descending (the keyset of the list cursor).
CREATE INDEX workflow_versions_order ON workflow_versions (workflow_name, version_key DESC);
-- At most one latest version per name, whatever the code does.
CREATE UNIQUE INDEX workflow_versions_one_latest ON workflow_versions (workflow_name) WHERE is_latest;
-- The candidate filter of a search: latest versions whose label terms
-- contain the signal type and overlap each other requested label.
-- fastupdate off: a search must not scan a pending list that registrations
-- grew (measured: 17 ms for the index scan after 10,000 registrations,
-- 0.1 ms without); registrations are rarer than searches and pay instead.
CREATE INDEX workflow_versions_label_terms ON workflow_versions USING gin (label_terms) WITH (fastupdate = off) WHERE is_latest;
CREATE INDEX workflow_versions_search ON workflow_versions USING gin (search_vector);

-- +goose StatementBegin
CREATE FUNCTION workflow_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		RAISE EXCEPTION 'workflow versions cannot be deleted (archive them instead)'
			USING ERRCODE = 'integrity_constraint_violation';
	END IF;
	IF (to_jsonb(NEW) - ARRAY['status', 'status_reason', 'is_latest', 'updated_at', 'updated_by', 'search_vector'])
		IS DISTINCT FROM
	   (to_jsonb(OLD) - ARRAY['status', 'status_reason', 'is_latest', 'updated_at', 'updated_by', 'search_vector']) THEN
		RAISE EXCEPTION 'workflow versions are immutable: only status fields may change'
			USING ERRCODE = 'integrity_constraint_violation';
	END IF;
	RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER workflow_versions_immutable
	BEFORE UPDATE OR DELETE ON workflow_versions
	FOR EACH ROW EXECUTE FUNCTION workflow_versions_immutable();

-- Each search's answer, so a selection can be checked against what was
-- shown (validate). Rows live catalog.discoveryTTL, then the sweep deletes
-- them (by created_at).
CREATE TABLE workflow_discoveries (
	discovery_id uuid PRIMARY KEY,
	created_at   timestamptz NOT NULL,
	request      jsonb NOT NULL,
	offered      uuid[] NOT NULL
);
CREATE INDEX workflow_discoveries_created ON workflow_discoveries (created_at);

-- +goose Down
DROP TABLE workflow_discoveries;
DROP TABLE workflow_versions;
DROP FUNCTION workflow_versions_immutable();
