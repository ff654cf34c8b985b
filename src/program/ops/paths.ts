/** Paths inside the ops repository, derived only from validated names (DNS-label apps and stages, semver versions). */
export const opsPaths = {
    environment: (stage: string): string => `environments/${stage}/`,
    chart: (stage: string): string => `environments/${stage}/Chart.yaml`,
    values: (stage: string): string => `environments/${stage}/values.yaml`,
    ledger: (stage: string): string => `environments/${stage}/releases.json`,
    secrets: (stage: string): string => `environments/${stage}/secrets/`,
    secretsTemplate: (stage: string): string => `environments/${stage}/templates/sealed-secrets.yaml`,
    release: (app: string, version: string): string => `releases/${app}/${version}/`,
    codeowners: ".github/CODEOWNERS",
    readme: "README.md",
};

