-- The provider's own cost report per source, UTC day, workspace, cost type and model (Anthropic
-- cost_report, OpenAI costs), in USD: what `report --reconcile` compares the estimate with.
CREATE TABLE provider_costs (
    source       TEXT    NOT NULL,
    day_start    INTEGER NOT NULL,
    workspace_id TEXT    NOT NULL,  -- '' for the default workspace or none
    cost_type    TEXT    NOT NULL,  -- tokens | web_search | code_execution | billed | …
    model        TEXT    NOT NULL,  -- '' when the line names none
    amount_usd   REAL    NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (source, day_start, workspace_id, cost_type, model)
) WITHOUT ROWID;
