-- Questions in a quiz campaign's bank (0 without a quiz), and whether
-- buyers grab through their own signed path.
ALTER TABLE campaigns ADD COLUMN quiz_questions INTEGER NOT NULL DEFAULT 0
    CHECK (quiz_questions >= 0 AND quiz_questions <= 100000);
ALTER TABLE campaigns ADD COLUMN hidden_path INTEGER NOT NULL DEFAULT 0
    CHECK (hidden_path IN (0, 1));
