-- Questions in a quiz campaign's bank (0 without a quiz), and whether
-- buyers grab through their own signed path.
ALTER TABLE campaigns ADD COLUMN quiz_questions BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN hidden_path BOOLEAN NOT NULL DEFAULT 0,
    ADD CONSTRAINT campaigns_quiz_questions CHECK (quiz_questions >= 0 AND quiz_questions <= 100000),
    ADD CONSTRAINT campaigns_hidden_path CHECK (hidden_path IN (0, 1));
