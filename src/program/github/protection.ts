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
 * Protection of `main` for a repository role (classic branch protection; docs/protection.md says
 * why not a ruleset).
 *
 * Both roles: no force push, no deletion, admins included, 2 approvals including a code owner,
 * stale approvals dismissed, approval of the last push, strict required status checks, resolved
 * conversations. The ops repo also requires linear history (one promotion = one commit on main).
 * The runner passes on ops because it is the one pull-request bypass and because it reports the
 * required `validate` check on each of its commits, after running that check's rules, before it
 * pushes (git/engine.ts, PushAs): required status checks have no bypass list.
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

/** One requirement of OpenSSF Scorecard's Branch-Protection check and whether the settings meet it. */
export interface ScorecardRequirement {
    readonly tier: 1 | 2 | 3 | 4 | 5;
    /** The Scorecard probe that reads it. */
    readonly probe: string;
    /** Its weight inside the tier. */
    readonly weight: number;
    readonly met: boolean;
}

/** Points each tier adds when fully met (Scorecard v5's basicLevel ... adminThoroughReviewLevel). */
const TIER_POINTS = { 1: 3, 2: 3, 3: 2, 4: 1, 5: 1 } as const;

/**
 * What Scorecard v5's Branch-Protection check reads from these settings, probe by probe
 * (checks/evaluation/branch_protection.go), as a run with an admin token sees them. Classic
 * protection's pull-request bypass list is not among them; a ruleset's bypass actors would turn
 * `branchProtectionAppliesToAdmins` false (clients/githubrepo/branches.go), see docs/protection.md.
 */
export function scorecardTiers(p: ProtectionSettings): ScorecardRequirement[] {
    const reviews = p.requiredPullRequestReviews[0];
    const checks = p.requiredStatusChecks[0];
    const approvals = reviews?.requiredApprovingReviewCount ?? 0;
    return [
        { tier: 1, probe: "blocksDeleteOnBranches", weight: 1, met: !p.allowsDeletions },
        { tier: 1, probe: "blocksForcePushOnBranches", weight: 1, met: !p.allowsForcePushes },
        { tier: 2, probe: "requiresApproversForPullRequests (at least 1)", weight: 2, met: approvals >= 1 },
        { tier: 2, probe: "requiresUpToDateBranches", weight: 1, met: (checks?.strict ?? false) && (checks?.contexts.length ?? 0) > 0 },
        { tier: 2, probe: "requiresLastPushApproval", weight: 1, met: reviews?.requireLastPushApproval ?? false },
        { tier: 2, probe: "requiresPRsToChangeCode", weight: 1, met: reviews !== undefined },
        { tier: 3, probe: "runsStatusChecksBeforeMerging", weight: 1, met: (checks?.contexts.length ?? 0) > 0 },
        { tier: 4, probe: "requiresApproversForPullRequests (at least 2)", weight: 1, met: approvals >= 2 },
        { tier: 4, probe: "requiresCodeOwnersReview", weight: 1, met: reviews?.requireCodeOwnerReviews ?? false },
        { tier: 5, probe: "dismissesStaleReviews", weight: 1, met: reviews?.dismissStaleReviews ?? false },
        { tier: 5, probe: "branchProtectionAppliesToAdmins", weight: 1, met: p.enforceAdmins },
    ];
}

/**
 * The Branch-Protection score of one branch with these settings, computed as Scorecard v5 does:
 * tier by tier, each adding its points in proportion to what it meets, stopping after the first
 * tier not fully met; the sum is truncated to an integer.
 */
export function scorecardScore(p: ProtectionSettings): number {
    const rows = scorecardTiers(p);
    let score = 0;
    for (const tier of [1, 2, 3, 4, 5] as const) {
        const inTier = rows.filter((r) => r.tier === tier);
        const max = inTier.reduce((n, r) => n + r.weight, 0);
        const got = inTier.reduce((n, r) => n + (r.met ? r.weight : 0), 0);
        score += (TIER_POINTS[tier] * got) / max;
        if (got < max) break;
    }
    return Math.trunc(score);
}
