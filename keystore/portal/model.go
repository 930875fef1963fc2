package portal

import "time"

// Roles and account states.
const (
	RoleAdmin     = "admin"
	RoleDeveloper = "developer"

	StatusActive   = "active"
	StatusPending  = "pending"
	StatusDisabled = "disabled"
)

// Sign-up modes.
const (
	SignupOpen     = "open"
	SignupInvite   = "invite"
	SignupApproval = "approval"
)

// ApprovalAttr is the product attribute that makes access to it need an
// admin's approval ("manual"); any other value is automatic.
const ApprovalAttr = "approval"

// User is a portal account; its e-mail is the keystore developer's id.
type User struct {
	Email        string    `json:"email"`
	Name         string    `json:"name,omitempty"`
	PasswordHash string    `json:"password_hash"`
	Role         string    `json:"role"`
	Status       string    `json:"status"`
	Created      time.Time `json:"created"`
	// FailedLogins counts consecutive wrong passwords; LockedUntil is set when they reach the limit.
	FailedLogins int       `json:"failed_logins,omitempty"`
	LockedUntil  time.Time `json:"locked_until,omitzero"`
}

// Session is a signed-in browser, stored under the SHA-256 of its cookie.
type Session struct {
	Email   string    `json:"email"`
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

// Invite lets one address sign up in invite mode, stored under the SHA-256 of its code.
type Invite struct {
	Email   string    `json:"email"`
	Expires time.Time `json:"expires"`
}

// Approval lists the products an app asked for that wait for an admin.
type Approval struct {
	App       string   `json:"app"`
	Developer string   `json:"developer"`
	Pending   []string `json:"pending"`
}
