/**
 * Branch protection of `main`, shaped by the repository's role. Pure: the component passes the
 * result to `github.BranchProtection`.
 */
import type { RepositorySettings } from "../../config/platform";

/** The two repository roles of the pipeline. */
export type RepoRole = "dev" | "ops";

/** Settings for `github.BranchProtection` (everything but `repositoryId`). */
export interface ProtectionSettings {
    readonly pattern: string;
    readonly enforceAdmins: boolean;
    readonly allowsDeletions: boolean;
    readonly allowsForcePushes: boolean;
    readonly requiredLinearHistory: boolean;
    readonly requireConversationResolution: boolean;
    readonly requireSignedCommits: boolean;
    readonly requiredStatusChecks: { strict: boolean; contexts: string[] }[];
    readonly requiredPullRequestReviews: {
        requiredApprovingReviewCount: number;
        requireCodeOwnerReviews: boolean;
        dismissStaleReviews: boolean;
        requireLastPushApproval: boolean;
        restrictDismissals: boolean;
        pullRequestBypassers: string[];
    }[];
    readonly forcePushBypassers: string[];
}

/**
 * Protection of `main` for a repository role.
 *
 * Both roles: no force push, no deletion, admins included, 2 approvals including a code owner,
 * stale approvals dismissed, approval of the last push, strict required status checks, resolved
 * conversations. The ops repo also requires linear history (one promotion = one commit on main).
 */
export function branchProtection(role: RepoRole, repo: RepositorySettings, runnerActor?: string): ProtectionSettings {
    return {
        pattern: "main",
        enforceAdmins: true,
        allowsDeletions: false,
        allowsForcePushes: false,
        requiredLinearHistory: role === "ops",
        requireConversationResolution: true,
        // Exception: signed commits are not required. The runner commits promotions as a bot
        // without a signing key, and requiring signatures would force every promotion through
        // a pull request. Provenance is carried by commit trailers and Pulumi's update history.
        requireSignedCommits: false,
        requiredStatusChecks: [{ strict: true, contexts: [...repo.requiredChecks] }],
        requiredPullRequestReviews: [
            {
                requiredApprovingReviewCount: 2,
                requireCodeOwnerReviews: true,
                dismissStaleReviews: true,
                requireLastPushApproval: true,
                restrictDismissals: true,
                // Exception (ops only): the runner pushes each promotion as one direct commit to
                // main after its own policy checks (stage order, holds, freeze windows, approvals);
                // it is the only actor allowed to skip the pull request.
                pullRequestBypassers: role === "ops" && runnerActor ? [runnerActor] : [],
            },
        ],
        forcePushBypassers: [],
    };
}

/**
 * The OpenSSF Scorecard Branch-Protection requirements, tier by tier, as its documentation
 * lists them (each tier counts only when every earlier tier is fully met).
 */
export function scorecardTiers(p: ProtectionSettings): { tier: number; points: number; check: string; met: boolean }[] {
    const reviews = p.requiredPullRequestReviews[0];
    const checks = p.requiredStatusChecks[0];
    return [
        { tier: 1, points: 3, check: "prevent force push", met: !p.allowsForcePushes },
        { tier: 1, points: 3, check: "prevent branch deletion", met: !p.allowsDeletions },
        { tier: 1, points: 3, check: "include administrators", met: p.enforceAdmins },
        { tier: 2, points: 6, check: "required reviewers >= 1", met: (reviews?.requiredApprovingReviewCount ?? 0) >= 1 },
        { tier: 2, points: 6, check: "strict status checks", met: checks?.strict ?? false },
        { tier: 3, points: 8, check: "status checks defined", met: (checks?.contexts.length ?? 0) > 0 },
        { tier: 4, points: 9, check: "required reviewers >= 2", met: (reviews?.requiredApprovingReviewCount ?? 0) >= 2 },
        { tier: 5, points: 10, check: "dismiss stale reviews", met: reviews?.dismissStaleReviews ?? false },
        { tier: 5, points: 10, check: "require code owner review", met: reviews?.requireCodeOwnerReviews ?? false },
    ];
}

/** The Branch-Protection score these settings earn under {@link scorecardTiers}. */
export function scorecardScore(p: ProtectionSettings): number {
    let score = 0;
    const tiers = scorecardTiers(p);
    for (const tier of [1, 2, 3, 4, 5]) {
        const rows = tiers.filter((t) => t.tier === tier);
        if (!rows.every((r) => r.met)) break;
        score = rows[0].points;
    }
    return score;
}
