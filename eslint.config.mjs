// Lint rules: typescript-eslint's recommended set, plus the few rules that keep errors honest.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
    { ignores: ["dist/**", "node_modules/**", "toolchain/**", "test-artifacts/**"] },
    js.configs.recommended,
    ...tseslint.configs.recommended,
    {
        files: ["**/*.ts"],
        rules: {
            "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
            "@typescript-eslint/no-floating-promises": "off",
            "no-console": "off",
            eqeqeq: ["error", "always"],
        },
    },
    {
        files: ["scripts/**/*.js", "bin/*", "test/support/*.js"],
        languageOptions: { globals: { require: "readonly", module: "writable", process: "readonly", __dirname: "readonly", console: "readonly" } },
        rules: { "@typescript-eslint/no-require-imports": "off" },
    },
);
