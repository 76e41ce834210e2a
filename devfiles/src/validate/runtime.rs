//! What Cove's runtimes can run: `container-overrides` / `pod-overrides`
//! and fields only another runtime understands.

use super::*;

impl Validator<'_> {
    /// `container-overrides` / `pod-overrides`: malformed values are
    /// errors, fields Docker cannot express are warnings naming them.
    pub(super) fn overrides(&mut self) {
        let top_pod = self.d.attributes.get(overrides::POD_OVERRIDES);
        if let Some(v) = top_pod {
            let (_, findings) = overrides::pod(v);
            for f in findings {
                let mut path: Vec<Seg<'_>> =
                    vec![Seg::Key("attributes"), Seg::Key(overrides::POD_OVERRIDES)];
                path.extend(f.path.iter().map(|k| Seg::Key(k)));
                let (file, pos) = self.f.top(&path);
                let d = if f.error {
                    Diagnostic::error(file, pos, f.message)
                } else {
                    Diagnostic::warning(file, pos, f.message)
                };
                self.push(d);
            }
        }
        let mut pod_user = top_pod
            .map(|v| overrides::pod(v).0.run_as_user)
            .unwrap_or_default();
        for c in &self.d.components {
            if let Some(v) = c.attributes.get(overrides::POD_OVERRIDES) {
                pod_user = overrides::pod(v).0.run_as_user.or(pod_user);
            }
        }
        for c in &self.d.components {
            for attr in [overrides::CONTAINER_OVERRIDES, overrides::POD_OVERRIDES] {
                let Some(v) = c.attributes.get(attr) else {
                    continue;
                };
                let (applied, findings) = if attr == overrides::POD_OVERRIDES {
                    overrides::pod(v)
                } else if c.container.is_some() {
                    overrides::container(v)
                } else {
                    let (file, pos) = self.f.locate(
                        "components",
                        &c.name,
                        &[Seg::Key("attributes"), Seg::Key(attr)],
                    );
                    self.push(Diagnostic::warning(file, pos, format!("`{attr}` of `{}` is not applied: only container components have a container to override", c.name)));
                    continue;
                };
                for f in findings {
                    let mut rel: Vec<Seg<'_>> = vec![Seg::Key("attributes"), Seg::Key(attr)];
                    rel.extend(f.path.iter().map(|k| Seg::Key(k)));
                    let (file, pos) = self.f.locate("components", &c.name, &rel);
                    let d = if f.error {
                        Diagnostic::error(file, pos, f.message)
                    } else {
                        Diagnostic::warning(file, pos, f.message)
                    };
                    self.push(d);
                }
                if attr == overrides::CONTAINER_OVERRIDES
                    && applied.run_as_group.is_some()
                    && applied.run_as_user.or(pod_user).is_none()
                {
                    let (file, pos) = self.f.locate(
                        "components",
                        &c.name,
                        &[
                            Seg::Key("attributes"),
                            Seg::Key(attr),
                            Seg::Key("securityContext"),
                            Seg::Key("runAsGroup"),
                        ],
                    );
                    self.push(Diagnostic::warning(file, pos, format!("`{attr}` securityContext.runAsGroup is not applied without runAsUser: Docker sets the group together with the user")));
                }
                if let Some(ct) = &c.container {
                    self.override_requests(c, ct, &applied);
                }
            }
        }
    }

    /// Constructs the Docker backend accepts but cannot give their
    /// Kubernetes meaning: each is a warning, never silence.
    pub(super) fn docker_only(&mut self) {
        for c in &self.d.components {
            let Some(ct) = &c.container else { continue };
            if ct.annotation.is_some() {
                self.warn(
                    "components",
                    &c.name,
                    &[Seg::Key("container"), Seg::Key("annotation")],
                    format!("annotations of container `{}` have no effect: they annotate a Kubernetes Deployment or Service, which Cove does not create", c.name),
                    None,
                );
            }
            for (i, e) in ct.endpoints.iter().enumerate() {
                if e.annotation.is_some() {
                    self.warn(
                        "components",
                        &c.name,
                        &[Seg::Key("container"), Seg::Key("endpoints"), Seg::Index(i), Seg::Key("annotation")],
                        format!("annotations of endpoint `{}` have no effect: they annotate a Kubernetes Ingress or Route, which Cove does not create", e.name),
                        None,
                    );
                }
            }
        }
        for c in &self.d.commands {
            if let Some(a) = &c.apply {
                self.warn(
                    "commands",
                    &c.id,
                    &[Seg::Key("apply")],
                    format!("apply command `{}` is not run: the Docker backend does not apply components (running it, or an event or composite that includes it, reports it as skipped)", c.id),
                    Some(format!("use an exec command in a container to do what applying `{}` would", a.component)),
                );
            }
        }
    }

    /// Request ≤ limit once the override is applied.
    fn override_requests(
        &mut self,
        c: &crate::model::Component,
        ct: &crate::model::Container,
        a: &overrides::Applied,
    ) {
        let pairs = [
            (
                "memory",
                a.memory_limit.as_ref().or(ct.memory_limit.as_ref()),
                a.memory_request.as_ref().or(ct.memory_request.as_ref()),
                quantity::bytes as fn(&str) -> Option<u64>,
            ),
            (
                "cpu",
                a.cpu_limit.as_ref().or(ct.cpu_limit.as_ref()),
                a.cpu_request.as_ref().or(ct.cpu_request.as_ref()),
                quantity::millicores,
            ),
        ];
        for (what, limit, request, parse) in pairs {
            if let (Some(l), Some(r)) =
                (limit.and_then(|q| parse(q)), request.and_then(|q| parse(q)))
            {
                let from_override = match what {
                    "memory" => a.memory_limit.is_some() || a.memory_request.is_some(),
                    _ => a.cpu_limit.is_some() || a.cpu_request.is_some(),
                };
                if r > l && from_override {
                    self.error(
                        "components",
                        &c.name,
                        &[Seg::Key("attributes"), Seg::Key(overrides::CONTAINER_OVERRIDES), Seg::Key("resources")],
                        format!("with `{}` applied, the {what} request of container `{}` is larger than its limit", overrides::CONTAINER_OVERRIDES, c.name),
                        Some(format!("lower the {what} request or raise the limit")),
                    );
                }
            }
        }
    }

    fn push(&mut self, d: Diagnostic) {
        if d.is_error() {
            self.push_error(d);
        } else if self.findings.warnings.len() >= MAX_DIAGNOSTICS {
            self.findings.dropped_warnings.add(&d);
        } else {
            self.findings.warnings.push(d);
        }
    }
}
